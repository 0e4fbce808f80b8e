"""Administrators' pages: datasets, training jobs, model versions and the audit log."""

from flask import Blueprint, jsonify, redirect, render_template, request, url_for
from flask_login import current_user

from ml.datasets import list_datasets
from web.accounts.auth import admin_required
from web.jobs.records import list_jobs
from web.services import datasets_root, get_registry

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
@admin_required
def require_admin():
    """Every page here is for administrators only."""


@bp.before_app_request
def first_run():
    """Send an administrator opening the start page of a fresh install (no model ever activated) to the first steps."""
    if request.endpoint == "doctor.predict" and request.method == "GET" and current_user.is_authenticated \
            and current_user.is_admin and not get_registry().pointer():
        return redirect(url_for("admin.home"))
    return None


@bp.get("/")
def home():
    """Show the way in: import, train, activate, each step ticked once done, with the latest of each."""
    registry = get_registry()
    datasets, versions, active = list_datasets(datasets_root()), registry.versions(), registry.pointer().get("version")
    steps = {"import": bool(datasets), "train": bool(versions), "activate": bool(active)}
    return render_template("admin/home.html", steps=steps, datasets=datasets, versions=versions, active=active,
                           jobs=list_jobs("training", limit=3))


def live_state(state):
    """Answer a live page's poll with a job's state as JSON, never cached."""
    response = jsonify(state)
    response.headers["Cache-Control"] = "no-store"
    return response
