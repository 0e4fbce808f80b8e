"""The API's model-version endpoints: list, compare, export, import, activate, delete, feedback."""
from flask import g, jsonify, request

from web.api import bp
from web.doctor.feedback import agreement
from web.errors import error_response
from web.models.actions import activate, delete_version
from web.models.bundles import bundle_download, bundle_upload
from web.models.summaries import broken_summary, version_summary
from web.services import get_registry


@bp.get("/models")
def list_models():
    """List model versions, newest first; `?compare=v1,v2` returns just those, side by side."""
    registry = get_registry()
    active = registry.pointer().get("version")
    wanted = [v for v in request.args.get("compare", "").split(",") if v]
    if wanted:
        return jsonify(models=[version_summary(registry.get(v), active) for v in wanted], active=active)
    return jsonify(models=[version_summary(v, active) for v in registry.versions()],
                   broken=[broken_summary(v, active) for v in registry.broken()], active=active)


@bp.get("/models/<version>/bundle")
def export_model(version):
    """Download a version as a bundle (zip) to import at another site."""
    return bundle_download(version, g.api_user)


@bp.get("/models/<version>/feedback")
def model_feedback(version):
    """Doctors' assessments of a version's results against its decisions: counts per (assessment, decision)."""
    return jsonify(agreement(get_registry().get(version)))


@bp.post("/models")
def import_model():
    """Import a bundle from the multipart field `bundle` as a new version; it is not activated."""
    upload = request.files.get("bundle")
    if upload is None:
        return error_response(400, "Send the bundle (a zip exported by FaceDx) as the multipart field 'bundle'.")
    version = bundle_upload(upload.stream, upload.filename, g.api_user)
    return jsonify(version_summary(version, get_registry().pointer().get("version"))), 201


@bp.post("/models/<version>/activate")
def activate_model(version):
    """Activate a version; one flagged as not useful needs JSON {"force": true}."""
    body = request.get_json(silent=True)
    force = isinstance(body, dict) and body.get("force") is True
    activate(g.api_user, version, force)
    return jsonify(active=version)


@bp.delete("/models/<version>")
def delete_model(version):
    """Delete a version that is not active (409 for the active one); 204."""
    delete_version(g.api_user, version)
    return "", 204
