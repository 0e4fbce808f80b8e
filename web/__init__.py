"""The web layer: turns HTTP requests and commands into calls of `ml`, and the results back."""
from pathlib import Path

from flask import current_app

from ml.datasets import ImportLimits
from ml.registry import ModelRegistry


def datasets_root():
    """Return the folder that holds the imported datasets."""
    return Path(current_app.config["UPLOAD_DIR"]) / "datasets"


def import_limits():
    """Return the archive limits from the configuration."""
    config = current_app.config
    return ImportLimits(max_entries=config["MAX_ARCHIVE_ENTRIES"], max_total_bytes=config["MAX_ARCHIVE_BYTES"],
                        max_file_bytes=config["MAX_IMAGE_BYTES"], max_pixels=config["MAX_IMAGE_PIXELS"],
                        min_per_class=config["MIN_IMAGES_PER_CLASS"])


def get_registry():
    """Return the model registry of this application."""
    return ModelRegistry(current_app.config["MODELS_DIR"])


def get_predictor():
    """Return the application's one Predictor, created on first use and shared by all threads."""
    from ml.predictor import Predictor

    predictor = current_app.extensions.get("facedx.predictor")
    if predictor is None:
        predictor = current_app.extensions.setdefault(
            "facedx.predictor", Predictor(get_registry(), current_app.config["MAX_IMAGE_PIXELS"]))
    return predictor
