"""JSON API, version 1: bearer-token authentication, errors as {error, message}."""

from flask import Blueprint, g, jsonify, request

from ml.errors import FaceDxError
from web.accounts.auth import csrf, user_for_token
from web.errors import error_response
from web.services import get_predictor

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)          # no cookies here: a bearer token cannot be sent by another site's form
PUBLIC = {"api.health"}
FOR_DOCTORS = {"api.predict"}     # every other route needs an administrator's token


@bp.before_request
def authenticate():
    """Require a bearer token; administrators' routes refuse other roles."""
    if request.endpoint in PUBLIC:
        return None
    g.api_user = user_for_token(request.headers.get("Authorization"))
    if g.api_user is None:
        response = error_response(401, "Send a valid API token: 'Authorization: Bearer <token>'.")
        response[0].headers["WWW-Authenticate"] = "Bearer"
        return response
    if request.endpoint not in FOR_DOCTORS and not g.api_user.is_admin:
        return error_response(403, "This needs an administrator's token.")
    return None


@bp.get("/health")
def health():
    """Say whether a model can serve, and which version (no authentication)."""
    try:
        loaded = get_predictor().current()
    except FaceDxError:
        return jsonify(status="unavailable", model_version=None), 503
    return jsonify(status="ok", model_version=loaded.version)
