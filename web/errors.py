"""One place that turns errors into responses: JSON for the API, a page for browsers."""
import logging

from flask import jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from ml.errors import (BundleError, DatasetError, DatasetExists, DatasetNotFound, FaceDxError, ImageError,
                       NoActiveModel, NoFaceFound, NotUseful, Overloaded, TrainingError, UnsupportedImage,
                       VersionBroken, VersionExists, VersionNotFound, WeightsUnavailable)
from web.jobs import JobConflict

log = logging.getLogger(__name__)

# Most specific first: the first class an error is an instance of gives its status.
STATUS_OF = [
    (UnsupportedImage, 415), (ImageError, 422), (NoFaceFound, 422),
    (DatasetNotFound, 404), (VersionNotFound, 404), (DatasetExists, 409), (JobConflict, 409), (NotUseful, 409),
    (VersionBroken, 409), (VersionExists, 409), (BundleError, 422),
    (DatasetError, 400), (TrainingError, 422), (WeightsUnavailable, 422), (NoActiveModel, 503),
    (Overloaded, 503),
    (FaceDxError, 400),
]


def status_of(error):
    """Return the HTTP status for an error a user caused."""
    return next(status for kind, status in STATUS_OF if isinstance(error, kind))


def error_code(status):
    """Return a short machine-readable name for a status, e.g. 'not_found'."""
    from werkzeug.http import HTTP_STATUS_CODES

    return HTTP_STATUS_CODES.get(status, "error").lower().replace(" ", "_").replace("-", "_")


def wants_json():
    return request.path.startswith("/api/")


def error_response(status, message):
    """Answer with {error, message} for the API, or the error page for a browser."""
    if wants_json():
        return jsonify(error=error_code(status), message=message), status
    return render_template("errors/error.html", status=status, message=message), status


def init_app(app):
    """Register the error handlers."""
    @app.errorhandler(HTTPException)
    def http_error(error):
        return error_response(error.code, error.description)

    @app.errorhandler(FaceDxError)
    def user_error(error):
        response = error_response(status_of(error), str(error))
        if isinstance(error, Overloaded):
            response[0].headers["Retry-After"] = "2"
        return response

    @app.errorhandler(Exception)
    def unexpected(error):
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error_response(500, "Something went wrong on the server. The error was logged.")
