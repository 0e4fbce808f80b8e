"""The web layer: turns HTTP requests and commands into calls of `ml`, and the results back."""
from pathlib import Path

from flask import current_app

from ml.datasets import ImportLimits
from ml.versions.registry import ModelRegistry


def datasets_root(config=None):
    """Return the folder that holds the imported datasets (of the current app, or of the settings given)."""
    return Path((config or current_app.config)["UPLOAD_DIR"]) / "datasets"


def import_limits(config=None):
    """Return the archive limits from the configuration (of the current app, or the settings given)."""
    config = config or current_app.config
    return ImportLimits(max_entries=config["MAX_ARCHIVE_ENTRIES"], max_total_bytes=config["MAX_ARCHIVE_BYTES"],
                        max_file_bytes=config["MAX_IMAGE_BYTES"], max_pixels=config["MAX_IMAGE_PIXELS"],
                        min_per_class=config["MIN_IMAGES_PER_CLASS"], max_classes=config["MAX_CLASSES"])


def get_registry():
    """Return the model registry of this application."""
    return ModelRegistry(current_app.config["MODELS_DIR"])


def get_predictor():
    """Return the application's one Predictor, created on first use and shared by all threads."""
    from ml.serving.predictor import Predictor

    predictor = current_app.extensions.get("facedx.predictor")
    if predictor is None:
        config = current_app.config
        predictor = current_app.extensions.setdefault("facedx.predictor", Predictor(
            get_registry(), config["MAX_IMAGE_PIXELS"], config["BATCH_WINDOW_MS"], config["MAX_BATCH"],
            config["MAX_PENDING_PREDICTIONS"]))
    return predictor


CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; "
                           "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'")


def security_headers(response):
    """Add the headers that keep pages from being framed, sniffed or fed foreign scripts."""
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response
