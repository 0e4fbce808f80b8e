"""One place that turns errors into responses: JSON for the API, a page for browsers."""
import logging

from flask import jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from logsafe import escaped
from ml.errors import (BundleError, DatasetError, DatasetExists, DatasetNotFound, DiskFull, FaceDxError, ImageError,
                       NoActiveModel, NoFaceFound, NotUseful, Overloaded, TrainingError, UnsupportedImage,
                       VersionActive, VersionBroken, VersionExists, VersionNotFound, WeightsUnavailable, is_disk_full)
from ml.serving.explanation_pool import ClientGone, Replaced
from web.accounts.actions import AccountConflict
from web.db import db
from web.doctor.serving import TooManyAtOnce
from web.jobs.dispatch import QueueUnavailable
from web.jobs.records import JobConflict
from web.records import disk_full

log = logging.getLogger(__name__)

# Most specific first: the first class an error is an instance of gives its status.
STATUS_OF = [
    (UnsupportedImage, 415), (ImageError, 422), (NoFaceFound, 422),
    (DatasetNotFound, 404), (VersionNotFound, 404), (DatasetExists, 409), (JobConflict, 409), (NotUseful, 409),
    (VersionBroken, 409), (VersionExists, 409), (VersionActive, 409), (BundleError, 422),
    (DatasetError, 400), (TrainingError, 422), (WeightsUnavailable, 422), (NoActiveModel, 503),
    (Overloaded, 503), (QueueUnavailable, 503), (DiskFull, 507), (Replaced, 409), (TooManyAtOnce, 429),
    (ClientGone, 499), (AccountConflict, 409),
    (FaceDxError, 400),
]


def status_of(error):
    """Return the HTTP status for an error a user caused."""
    return next(status for kind, status in STATUS_OF if isinstance(error, kind))


def caused_by_full_disk(error):
    """Say whether an error, or one it was raised from, means a full disk: for files or for the database."""
    from sqlalchemy.exc import DBAPIError

    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if is_disk_full(error) or (isinstance(error, DBAPIError) and disk_full(error)):
            return True
        error = error.__cause__ or error.__context__
    return False


def error_code(status):
    """Return a short machine-readable name for a status, e.g. 'not_found'."""
    from werkzeug.http import HTTP_STATUS_CODES

    return HTTP_STATUS_CODES.get(status, "error").lower().replace(" ", "_").replace("-", "_")


def wants_json():
    """Say whether the caller reads JSON: the API, or a page's script that asks for it (Accept)."""
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def error_response(status, message):
    """Answer with {error, message} for the API, or the error page for a browser."""
    if wants_json():
        return jsonify(error=error_code(status), message=message), status
    return render_template("errors/error.html", status=status, message=message), status


def init_app(app):
    """Register the error handlers."""
    @app.errorhandler(HTTPException)
    def http_error(error):
        if wants_json() or error.description != type(error).description:
            return error_response(error.code, error.description)
        # Werkzeug's stock words ("You don't have the permission…"): the page says it in its own.
        return render_template("errors/error.html", status=error.code, message=None), error.code

    @app.errorhandler(FaceDxError)
    def user_error(error):
        response = error_response(status_of(error), str(error))
        if isinstance(error, (Overloaded, TooManyAtOnce)):
            response[0].headers["Retry-After"] = "2"
        return response

    @app.errorhandler(Exception)
    def unexpected(error):
        if caused_by_full_disk(error):
            db.session.rollback()        # the failed write's transaction would break the page's own queries
            log.error("the disk is full (%s) on %s %s", type(error).__name__, escaped(request.method),
                      escaped(request.path))
            return user_error(DiskFull())
        log.exception("unexpected error on %s %s", escaped(request.method), escaped(request.path))
        return error_response(500, "Something went wrong on the server. The error was logged.")
