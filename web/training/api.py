"""The API's training endpoints: start a training job, follow it, list them, cancel one."""
from flask import g, jsonify, request

from web.api import bp
from web.errors import error_response
from web.jobs.records import cancel, get_job, job_state, list_jobs
from web.training.actions import start_training


@bp.post("/training-jobs")
def create_training_job():
    """Start training: JSON {"dataset": name, "options": {...}} -> 202 with the job."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("dataset"), str) \
            or not isinstance(body.get("options", {}), dict):
        return error_response(400, 'Send JSON {"dataset": "<name>", "options": {...}}.')
    job = start_training(g.api_user, body["dataset"], body.get("options", {}))
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
    cancel(g.api_user, job)
    return jsonify(job_state(job)), 202
