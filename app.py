"""FaceDx: the Flask application factory and the `app` object gunicorn serves."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")   # TensorFlow's start-up chatter hides real messages

from pathlib import Path  # noqa: E402

from flask import Flask  # noqa: E402

from config import Config  # noqa: E402


def create_app(test_config=None):
    """Create and configure the FaceDx application."""
    config = Config()
    app = Flask(__name__, instance_path=config.INSTANCE_DIR)
    app.config.from_object(config)
    if test_config:
        app.config.update(test_config)
    for key in ("UPLOAD_DIR", "MODELS_DIR", "INSTANCE_DIR"):
        Path(app.config[key]).mkdir(parents=True, exist_ok=True)

    from web import api, cli
    app.register_blueprint(api.bp)
    cli.init_app(app)
    return app


app = create_app()
