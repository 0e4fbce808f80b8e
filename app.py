"""FaceDx: the Flask application factory and the `app` object gunicorn serves."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")   # TensorFlow's start-up chatter hides real messages

import secrets  # noqa: E402
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
    if app.config["TRUSTED_PROXIES"]:
        from werkzeug.middleware.proxy_fix import ProxyFix
        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = instance_secret(Path(app.config["INSTANCE_DIR"]) / "secret_key")

    from web import admin, api, auth, cli, doctor, errors, limit_upload_size, security_headers
    app.before_request(limit_upload_size)     # first: before CSRF protection reads the form
    from web.db import db
    db.init_app(app)
    from flask_migrate import Migrate
    Migrate(app, db, directory=str(Path(__file__).parent / "migrations"))
    auth.init_app(app)
    errors.init_app(app)
    for blueprint in (auth.bp, doctor.bp, admin.bp, api.bp):
        app.register_blueprint(blueprint)
    cli.init_app(app)
    app.after_request(security_headers)
    from web.summaries import percent, version_summary
    app.add_template_filter(percent)
    app.add_template_global(version_summary)
    return app


def instance_secret(path):
    """Return the secret key kept in the instance folder, creating it (mode 600) on first use."""
    if not path.exists():
        staging = path.with_name(f".{path.name}.{os.getpid()}")
        descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as stream:
            stream.write(secrets.token_hex(32))
        try:
            os.link(staging, path)      # atomic: of several workers starting at once, one key wins
        except FileExistsError:
            pass
        finally:
            os.unlink(staging)
    return path.read_text().strip()


app = create_app()
