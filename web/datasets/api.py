"""The API's dataset endpoints: start an import, follow it, cancel it, list datasets."""
from flask import g, jsonify, request

from ml.datasets import list_datasets
from web.api import bp
from web.datasets.imports import dataset_summary, import_state, start_import
from web.errors import error_response
from web.jobs.records import cancel, get_job
from web.services import datasets_root


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
    cancel(g.api_user, job)
    return jsonify(import_state(job)), 202


@bp.get("/datasets")
def datasets():
    """List the imported datasets."""
    return jsonify(datasets=[dataset_summary(d) for d in list_datasets(datasets_root())])
