"""Administrators' training pages: start a training, watch it live, read its outcome, cancel it."""
from flask import current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms import SelectChoice

from ml.datasets import list_datasets
from ml.errors import FaceDxError
from ml.learning.options import OPTION_SPECS
from web.admin import bp, live_state
from web.errors import status_of
from web.jobs.records import cancel, get_job, job_state, list_jobs
from web.models.summaries import version_summary
from web.services import datasets_root, get_registry
from web.training.actions import start_training
from web.training.forms import TrainingForm

BASELINE_NAMES = {"majority": "majority class", "hog-svm": "HOG + linear SVM"}


@bp.route("/training", methods=["GET", "POST"])
def training():
    """Choose a dataset and options, start training; list the jobs."""
    form = TrainingForm()
    datasets = list_datasets(datasets_root())
    form.dataset.choices = [SelectChoice(d.id) for d in datasets]
    form.offer_backbones(current_app.config["PRETRAINED_DIRS"])
    if request.method == "GET" and datasets:
        newest = max(datasets, key=lambda d: d.manifest.created)
        form.dataset.data = request.args.get("dataset") or newest.id
    status = 200
    if form.validate_on_submit():
        options = {name: form[name].data for name in OPTION_SPECS}
        try:
            job = start_training(current_user, form.dataset.data, options)
        except FaceDxError as error:
            flash(str(error), "error")
            status = status_of(error)
        else:
            return redirect(url_for("admin.job", job_id=job.id))
    elif request.method == "POST":
        status = 400
    return render_template("admin/training.html", form=form, jobs=list_jobs("training")), status


@bp.get("/training/<int:job_id>")
def job(job_id):
    """Show one job live (step, folds scored, candidates, curves); once it succeeded, its score and what next."""
    found = get_job(job_id, "training")
    outcome = job_outcome(found)
    state = job_state(found)
    if outcome:
        state["result"] = outcome["scores"]
    chosen = found.options
    options = {name: value for name, value in chosen.items() if name not in OPTION_SPECS
               or OPTION_SPECS[name].applies(chosen.get("backbone"), chosen.get("head"))}
    return render_template("admin/job.html", job=found, state=state, outcome=outcome, options=options,
                           baseline_names=BASELINE_NAMES)


def job_outcome(found):
    """Return what a succeeded job made: its version, summary, the active version and its scores per fold, or None."""
    registry = get_registry()
    try:
        version = registry.get(found.model_version) if found.model_version else None
    except FaceDxError:             # deleted or damaged since: the job page still shows the job
        return None
    if version is None:
        return None
    active = registry.pointer().get("version")
    metrics = version.card.metrics
    scores = {"fold_accuracies": metrics.fold_accuracies if metrics.method == "cross-validation"
              else None, "baselines": {name: b["accuracy"] for name, b in metrics.baselines.items()}}
    return {"version": version, "summary": version_summary(version, active), "active": active, "scores": scores}


@bp.get("/training/<int:job_id>.json")
def job_json(job_id):
    """The job's state for the live page."""
    return live_state(job_state(get_job(job_id, "training")))


@bp.post("/training/<int:job_id>/cancel")
def job_cancel(job_id):
    """Ask a queued or running job to stop."""
    found = get_job(job_id, "training")
    cancel(current_user, found)
    flash(f"Job {job_id} will stop at the next step.", "info")
    return redirect(url_for("admin.job", job_id=job_id))
