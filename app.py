"""FaceDx: the Flask application factory (wsgi.py builds the app gunicorn serves; importing this builds nothing)."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")   # TensorFlow's start-up chatter hides real messages

import importlib  # noqa: E402
import secrets  # noqa: E402
from pathlib import Path  # noqa: E402

from flask import Flask  # noqa: E402
from werkzeug.routing import IntegerConverter  # noqa: E402

from config import Config  # noqa: E402

# The modules of each area whose routes join the administrators' pages (web/admin.py) or the API (web/api.py).
AREA_ROUTES = ("web.datasets.pages", "web.datasets.api", "web.training.pages", "web.training.api",
               "web.models.pages", "web.models.api", "web.doctor.api", "web.audit.pages")


def create_app(test_config=None):
    """Create and configure the FaceDx application."""
    config = Config()
    app = Flask(__name__, instance_path=config.INSTANCE_DIR)
    from web.uploads import BodyJSONProvider, UploadRequest
    app.request_class = UploadRequest           # per-route body limits; photos held in memory only
    app.json = BodyJSONProvider(app)
    app.url_map.converters["int"] = DatabaseId  # before any route is added, so every <int:...> is one
    app.config.from_object(config)
    if test_config:
        app.config.update(test_config)
    keep_data_private(app)
    if app.config["TRUSTED_PROXIES"]:
        from werkzeug.middleware.proxy_fix import ProxyFix
        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = instance_secret(Path(app.config["INSTANCE_DIR"]) / "secret_key")

    from web import admin, api, cli, errors
    from web.accounts import auth, password_links, users
    from web.db import db
    from web.doctor import feedback, pages
    from web.headers import security_headers
    from web.jobs import dispatch
    db.init_app(app)
    dispatch.init_app(app)
    from flask_migrate import Migrate
    Migrate(app, db, directory=str(Path(__file__).parent / "migrations"))
    auth.init_app(app)
    errors.init_app(app)
    for module in AREA_ROUTES:      # each adds its routes to the administrators' pages or the API
        importlib.import_module(module)
    for blueprint in (auth.bp, password_links.bp, pages.bp, feedback.bp, admin.bp, users.bp, api.bp):
        app.register_blueprint(blueprint)
    cli.init_app(app)
    app.after_request(security_headers)
    from web import readable
    from web.models.summaries import percent, proportion, version_summary, with_interval
    for shown in (percent, proportion, with_interval):
        app.add_template_filter(shown)
    readable.init_app(app)
    app.add_template_global(version_summary)
    return app


def keep_data_private(app):
    """Create files 0600 and folders 0700 from now on; close the data folders to other system users.

    The database holds password hashes, the datasets hold face crops. The web workers, the commands
    and the queue worker build the app and get this here; a job's process sets the same mask (worker.py).
    """
    os.umask(0o077)
    for key in ("UPLOAD_DIR", "MODELS_DIR", "INSTANCE_DIR"):
        folder = Path(app.config[key])
        folder.mkdir(parents=True, exist_ok=True)
        if folder.stat().st_uid == os.geteuid():       # folders made by an earlier version are 0755
            folder.chmod(0o700)


class DatabaseId(IntegerConverter):
    """An `<int:...>` URL part no larger than a database id (2**63 - 1): a larger number is not found."""

    def __init__(self, url_map, fixed_digits=0, min=None, max=2 ** 63 - 1, signed=False):
        super().__init__(url_map, fixed_digits, min, max, signed)


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
