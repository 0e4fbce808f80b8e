"""JSON API, version 1: bearer-token authentication, errors as {error, message}."""
import dataclasses

from flask import Blueprint, g, jsonify, request

from ml.datasets import list_datasets
from ml.errors import FaceDxError
from web import datasets_root, get_predictor, get_registry
from web.auth import csrf, user_for_token
from web.db import audit, db
from web.errors import error_response
from web.feedback import agreement
from web.privacy import decoded_photo
from web.serving import analysing, explained
from web.versions import delete_version
from web.bundles import bundle_download, bundle_upload
from web.summaries import broken_summary, version_summary
from web.imports import dataset_summary, import_state, start_import
from web.jobs import cancel, get_job, job_state, list_jobs, start_training

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


@bp.post("/predict")
def predict():
    """Predict from the multipart field `image` (`explain=true` adds a heat map); processed in memory only."""
    upload = request.files.get("image")
    if upload is None:
        return error_response(400, "Send the photo as the multipart form field 'image'.")
    explain = (request.args.get("explain") or request.form.get("explain") or "").lower()
    if explain not in ("", "true", "false", "1", "0"):
        return error_response(400, "explain must be true or false.")
    predictor = get_predictor()
    with analysing(g.api_user.id):
        prediction = predictor.predict_image(decoded_photo(upload.read()))
    if explain in ("true", "1"):         # the map in the maps' own pool, of the class the model names
        prediction = dataclasses.replace(prediction, explanation=explained(
            g.api_user.id, lambda: predictor.explain_crop(prediction.crop)))
    response = jsonify(prediction.as_dict())
    response.headers["Cache-Control"] = "no-store"
    return response


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
    get_registry().activate(version, force)
    audit(g.api_user, "model.activate", f"{version} (forced: flagged as not useful)" if force else version)
    db.session.commit()
    return jsonify(active=version)


@bp.delete("/models/<version>")
def delete_model(version):
    """Delete a version that is not active (409 for the active one); 204."""
    delete_version(g.api_user, version)
    return "", 204


@bp.post("/datasets")
def create_dataset():
    """Start importing a dataset from the multipart fields `archive` and `name` (optional `face_fallback`).

    Answers 202 with the import job at once; GET its Location until it has ended.
    """
    upload, name = request.files.get("archive"), request.form.get("name", "")
    if upload is None or not name:
        return error_response(400, "Send the multipart fields 'archive' (a zip) and 'name'.")
    job = start_import(upload, name, request.form.get("face_fallback", "none"), g.api_user)
    response = jsonify(import_state(job))
    response.headers["Location"] = f"/api/v1/dataset-imports/{job.id}"
    return response, 202


@bp.get("/dataset-imports/<int:job_id>")
def get_dataset_import(job_id):
    """An import's status and progress; once it succeeded, `result` holds the dataset with its rejected files."""
    return jsonify(import_state(get_job(job_id, "import")))


@bp.post("/dataset-imports/<int:job_id>/cancel")
def cancel_dataset_import(job_id):
    """Stop an import; nothing of it is kept."""
    job = get_job(job_id, "import")
    cancel(job)
    audit(g.api_user, "dataset.import_cancel", f"import {job_id}")
    db.session.commit()
    return jsonify(import_state(job)), 202


@bp.get("/datasets")
def datasets():
    """List the imported datasets."""
    return jsonify(datasets=[dataset_summary(d) for d in list_datasets(datasets_root())])


@bp.post("/training-jobs")
def create_training_job():
    """Start training: JSON {"dataset": name, "options": {...}} -> 202 with the job."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("dataset"), str) \
            or not isinstance(body.get("options", {}), dict):
        return error_response(400, 'Send JSON {"dataset": "<name>", "options": {...}}.')
    job = start_training(body["dataset"], body.get("options", {}), g.api_user.username)
    audit(g.api_user, "training.start", f"job {job.id} on {job.dataset}")
    db.session.commit()
    response = jsonify(job_state(job))
    response.headers["Location"] = f"/api/v1/training-jobs/{job.id}"
    return response, 202


@bp.get("/training-jobs")
def list_training_jobs():
    """List training jobs, newest first."""
    return jsonify(jobs=[job_state(job) for job in list_jobs("training", limit=100)])


@bp.get("/training-jobs/<int:job_id>")
def get_training_job(job_id):
    """A job's status, progress and history."""
    return jsonify(job_state(get_job(job_id, "training")))


@bp.post("/training-jobs/<int:job_id>/cancel")
def cancel_training_job(job_id):
    """Ask a job to stop."""
    job = get_job(job_id, "training")
    cancel(job)
    audit(g.api_user, "training.cancel", f"job {job_id}")
    db.session.commit()
    return jsonify(job_state(job)), 202
