"""JSON API, version 1."""
from flask import Blueprint, jsonify

from ml.errors import FaceDxError
from web import get_predictor

bp = Blueprint("api", __name__, url_prefix="/api/v1")


@bp.get("/health")
def health():
    """Say whether a model can serve, and which version."""
    try:
        loaded = get_predictor().current()
    except FaceDxError:
        return jsonify(status="unavailable", model_version=None), 503
    return jsonify(status="ok", model_version=loaded.version)
