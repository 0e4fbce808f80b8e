"""Job records: start, read, list and cancel jobs (trainings and dataset imports); fail those whose process died.

A job runs in a process of its own (web/jobs/dispatch.py starts it, web/jobs/run.py is what it does) and
keeps everything about itself in its record, so any web worker on any machine shows the truth.
One training and one import may run at the same time: an import only adds a new dataset, and a
training reads one that exists. Reading a job never writes; a job whose process died is shown
failed at once and recorded so by reconcile(), which runs before a job starts and at `flask setup`.
"""
import json
import os

from flask import abort, current_app

from ml.errors import FaceDxError
from web.db import audit, db
from web.jobs.dispatch import current_dispatcher, seconds_since
from web.records import ACTIVE_STATES, Job, utcnow

NOUNS = {"training": "training job", "import": "dataset import"}
DIED = "The job's process stopped unexpectedly (it was killed, or the server restarted)."
# The settings a job's process takes from the web process that starts it (those it needs and a test may change).
JOB_SETTINGS = ("UPLOAD_DIR", "MODELS_DIR", "PRETRAINED_DIRS", "SQLALCHEMY_DATABASE_URI", "JOB_HEARTBEAT_TIMEOUT",
                "MAX_ARCHIVE_ENTRIES", "MAX_ARCHIVE_BYTES", "MAX_IMAGE_BYTES", "MAX_IMAGE_PIXELS",
                "MIN_IMAGES_PER_CLASS")


class JobConflict(FaceDxError):
    """Another job of the kind is queued or running, or this one has ended (409, through the shared status table)."""


def job_settings(config):
    """Return the settings a job's process needs, from an app's configuration."""
    return {key: config[key] for key in JOB_SETTINGS}


def start_job(kind, dataset, options, username, here=False):
    """Record a job and start its process; raise JobConflict while another job of its kind is active.

    With `here` no process is started: the caller runs the job itself (`flask train`), already running.
    """
    dispatcher = current_dispatcher()
    with dispatcher.start_lock():
        reconcile()
        running = db.session.execute(db.select(Job).filter_by(kind=kind)
                                     .filter(Job.status.in_(ACTIVE_STATES))).scalars().first()
        if running is not None:
            noun = NOUNS[kind]
            raise JobConflict(f"{noun.capitalize()} {running.id} is still {running.status}; one {noun} runs at a "
                              "time. Wait for it or cancel it.")
        job = Job(kind=kind, dataset=dataset, options_json=json.dumps(options), created_by=username)
        if here:
            job.status, job.pid, job.started_at = "running", os.getpid(), utcnow()
            job.heartbeat_at = job.started_at
        db.session.add(job)
        db.session.commit()
        if not here:
            try:
                job.pid = dispatcher.submit(job, job_settings(current_app.config))
            except FaceDxError as error:          # never started: recorded as failed, not left queued
                job.status, job.error, job.finished_at = "failed", str(error), utcnow()
                db.session.commit()
                raise
            db.session.commit()
    return job


def get_job(job_id, kind):
    """Return a job of the given kind as it stands (see observed), or answer 404."""
    job = db.session.get(Job, job_id)
    if job is None or job.kind != kind:
        abort(404, f"There is no {NOUNS[kind]} {job_id}.")
    return observed(job)


def list_jobs(kind, limit=None):
    """Return the jobs of a kind as they stand, newest first."""
    query = db.select(Job).filter_by(kind=kind).order_by(Job.id.desc()).limit(limit)
    return [observed(job) for job in db.session.execute(query).scalars()]


def observed(job):
    """Return the job, shown failed when its process is gone; nothing is written (reconcile() records it)."""
    if job.active and not alive(job):
        db.session.expunge(job)        # changed for this reader only: a later commit must not write it
        job.status, job.error, job.finished_at = "failed", DIED, utcnow()
    return job


def job_state(job):
    """Return the job as the API's JSON object; a queued job also says what it is waiting for."""
    body = job.as_dict()
    waiting = current_dispatcher().waiting(job) if job.status == "queued" else None
    if waiting:
        body["waiting"] = waiting
    return body


# What the audit log records when a job of a kind is cancelled: the action and how the job is named.
CANCELLED = {"training": ("training.cancel", "job {}"), "import": ("dataset.import_cancel", "import {}")}


def cancel(actor, job):
    """Ask a queued or running job to stop, audited; it ends as cancelled and keeps nothing. One that ended: 409."""
    if not job.active:
        raise JobConflict(f"{NOUNS[job.kind].capitalize()} {job.id} has already ended ({job.status}); "
                          "there is nothing to cancel.")
    job.cancel_requested = True
    action, target = CANCELLED[job.kind]
    audit(actor, action, target.format(job.id))
    db.session.commit()


def reconcile():
    """Record as failed the jobs whose process is gone (after a crash, a kill or a server restart)."""
    stale = db.session.execute(db.select(Job).filter(Job.status.in_(ACTIVE_STATES))).scalars()
    dead = [job for job in stale if not alive(job)]
    for job in dead:
        job.status, job.error, job.finished_at = "failed", DIED, utcnow()
    if dead:
        db.session.commit()


def alive(job):
    """Say whether a queued or running job still has a process working on it.

    Its heartbeat decides, whatever its recorded pid says: after a restart the number may belong
    to another process. Before its first heartbeat the dispatcher says whether it is on its way.
    """
    dispatcher = current_dispatcher()
    if dispatcher.ended(job):
        return False                      # a local process that ended: no need to wait for its heartbeat to age
    timeout = current_app.config["JOB_HEARTBEAT_TIMEOUT"]
    if job.heartbeat_at is None:
        return dispatcher.pending(job, timeout)
    return seconds_since(job.heartbeat_at) < timeout
