"""What the running application shares with its requests and commands: its folders, its registry, its predictor."""
from flask import current_app

from ml.versions.registry import ModelRegistry
from web import settings


def datasets_root():
    """Return the folder that holds this application's imported datasets."""
    return settings.datasets_root(current_app.config)


def import_limits():
    """Return this application's archive limits."""
    return settings.import_limits(current_app.config)


def get_registry():
    """Return the model registry of this application."""
    return ModelRegistry(current_app.config["MODELS_DIR"])


def get_predictor():
    """Return the application's one Predictor, created on first use and shared by all threads."""
    from ml.serving.predictor import Predictor  # TensorFlow: loaded with the first prediction, not at start

    predictor = current_app.extensions.get("facedx.predictor")
    if predictor is None:
        config = current_app.config
        predictor = current_app.extensions.setdefault("facedx.predictor", Predictor(
            get_registry(), config["MAX_IMAGE_PIXELS"], config["BATCH_WINDOW_MS"], config["MAX_BATCH"],
            config["MAX_PENDING_PREDICTIONS"]))
    return predictor
