"""Training jobs: each runs in its own OS process (spawned, never forked) and reports into the database."""
import json
import logging
import multiprocessing
import os
import threading
import time
from dataclasses import asdict
from pathlib import Path

from flask import abort, current_app

from ml.errors import FaceDxError
from ml.filelock import exclusive_lock
from web.db import ACTIVE_STATES, TrainingJob, db, utcnow

log = logging.getLogger(__name__)
# Settings a training process needs to open the same data folder and database as its parent.
CHILD_SETTINGS = ("DATA_DIR", "UPLOAD_DIR", "MODELS_DIR", "INSTANCE_DIR", "PRETRAINED_DIRS",
                  "SQLALCHEMY_DATABASE_URI", "SECRET_KEY")
DIED = "The training process stopped unexpectedly (it was killed, or the server restarted)."
PROGRESS_INTERVAL_S = 0.5
HEARTBEAT_S = 5
QUEUE_NAME = "facedx-training"
QUEUE_JOB_TIMEOUT = 7 * 24 * 3600          # RQ's default (3 minutes) would kill any real training
QUEUE_KEEP_S = 7 * 24 * 3600


class JobConflict(FaceDxError):
    """Another training job is queued or running (409, through the shared status table)."""


def start_training(dataset_name, options, username):
    """Queue a training job and start its process; raise JobConflict while another one is active."""
    from ml.datasets import get_dataset
    from ml.options import TrainingOptions
    from web import datasets_root

    get_dataset(datasets_root(), dataset_name)
    checked = TrainingOptions.from_dict(options)
    with _start_lock():
        reconcile()
        active = db.session.execute(db.select(TrainingJob).filter(TrainingJob.status.in_(ACTIVE_STATES)))
        running = active.scalars().first()
        if running is not None:
            raise JobConflict(f"Training job {running.id} is still {running.status}; "
                              "one training job runs at a time. Wait for it or cancel it.")
        job = TrainingJob(dataset=dataset_name, options_json=json.dumps(asdict(checked)), created_by=username)
        db.session.add(job)
        db.session.commit()
        if current_app.config["REDIS_URL"]:
            # A worker (`flask --app app worker`, on a GPU host) runs the same run_job with its own settings.
            training_queue().enqueue(run_job, job.id, None, job_id=queue_id(job.id), job_timeout=QUEUE_JOB_TIMEOUT,
                                     result_ttl=QUEUE_KEEP_S, failure_ttl=QUEUE_KEEP_S)
            return job
        settings = {key: current_app.config[key] for key in CHILD_SETTINGS}
        process = multiprocessing.get_context("spawn").Process(target=run_job, args=(job.id, settings),
                                                               name=f"facedx-training-{job.id}")
        process.start()
        job.pid = process.pid
        db.session.commit()
    threading.Thread(target=process.join, daemon=True).start()     # reap it when it ends
    return job


def redis_connection():
    from redis import Redis

    # Pages that look at the queue must not hang on an unreachable host; blocking reads stay unbounded.
    return Redis.from_url(current_app.config["REDIS_URL"], socket_connect_timeout=5)


def training_queue():
    """Return the Redis queue that workers take training jobs from."""
    from rq import Queue

    return Queue(QUEUE_NAME, connection=redis_connection())


def queue_id(job_id):
    return f"facedx-training-{job_id}"


def job_state(job):
    """Return the job as the API's JSON object; a queued job also says what it is waiting for."""
    body = job.as_dict()
    if job.status == "queued" and current_app.config["REDIS_URL"]:
        body["waiting"] = waiting_for_worker()
    return body


def waiting_for_worker():
    """Say whether any training worker listens to the queue, so nobody waits on a job no one will run."""
    from redis.exceptions import RedisError
    from rq import Worker

    try:
        workers = Worker.count(queue=training_queue())
    except RedisError:
        return "The job queue (Redis) cannot be reached; the job starts once it is back and a worker takes it."
    if workers == 0:
        return ("No training worker is connected to the queue: start `flask --app app worker` on a training "
                "host; the job starts as soon as one connects.")
    return f"Waiting for a training worker to take the job ({workers} connected)."


def cancel(job):
    """Ask a queued or running job to stop; it ends as cancelled and writes nothing."""
    if job.active:
        job.cancel_requested = True
        db.session.commit()


def reconcile():
    """Mark jobs whose process is gone as failed (after a crash, a kill or a server restart)."""
    stale = db.session.execute(db.select(TrainingJob).filter(TrainingJob.status.in_(ACTIVE_STATES))).scalars()
    changed = False
    for job in stale:
        alive = _alive(job.pid) if job.pid is not None or not current_app.config["REDIS_URL"] else _queued_alive(job)
        if not alive:
            job.status, job.error, job.finished_at = "failed", DIED, utcnow()
            changed = True
    if changed:
        db.session.commit()


def _queued_alive(job):
    """A queued job lives while it waits in the queue, and while its process keeps writing heartbeats."""
    if job.heartbeat_at is not None:
        age = (utcnow() - job.heartbeat_at).total_seconds()
        return age < current_app.config["JOB_HEARTBEAT_TIMEOUT"]
    from redis.exceptions import RedisError
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

    try:
        status = Job.fetch(queue_id(job.id), connection=redis_connection()).get_status()
    except NoSuchJobError:
        return False
    except RedisError:          # the queue is unreachable for now: that says nothing about the job
        return True
    return status in ("queued", "started", "deferred", "scheduled")


def _alive(pid):
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:   # a finished child not yet reaped is a zombie: it is not running
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _start_lock():
    """Serialise job starts across the threads, processes and (with a queue) machines of all web workers."""
    if current_app.config["REDIS_URL"]:
        return redis_connection().lock("facedx:training-start", timeout=30, blocking_timeout=30)
    return exclusive_lock(Path(current_app.config["INSTANCE_DIR"]) / "training-start.lock")


def get_job(job_id):
    """Return a job with its state brought up to date, or answer 404."""
    reconcile()
    job = db.session.get(TrainingJob, job_id)
    if job is None:
        abort(404, f"There is no training job {job_id}.")
    return job


def run_job(job_id, settings):
    """Entry point of a training process (spawned locally, or a queue worker's): run one job, record its end.

    `settings` come from the web process that spawned it; a queue worker passes None and uses its own
    environment (the same FACEDX_* settings on the worker host).
    """
    from app import create_app

    app = create_app(settings)
    with app.app_context():
        JobRun(db.session.get(TrainingJob, job_id)).run()


def _heartbeat(engine, job_id, stop):
    """Write the job's heartbeat every few seconds until `stop` is set (a thread of the training process)."""
    from sqlalchemy import update

    while not stop.is_set():
        with engine.begin() as connection:
            connection.execute(update(TrainingJob.__table__).where(TrainingJob.__table__.c.id == job_id)
                               .values(heartbeat_at=utcnow()))
        stop.wait(HEARTBEAT_S)


class JobRun:
    """The training side of a job: reports progress, honours cancellation, records the outcome."""

    def __init__(self, job):
        self.job = job
        self.last_write = 0.0

    def run(self):
        from ml.datasets import get_dataset
        from ml.options import TrainingOptions
        from ml.training import TrainingCancelled, train
        from web import datasets_root, get_registry

        job = self.job
        job.status, job.started_at = "running", utcnow()
        db.session.commit()
        beating = threading.Event()
        threading.Thread(target=_heartbeat, args=(db.engine, job.id, beating), daemon=True).start()
        try:
            dataset = get_dataset(datasets_root(), job.dataset)
            version = train(dataset, TrainingOptions.from_dict(job.options), get_registry(),
                            current_app.config["PRETRAINED_DIRS"], self.progress)
        except TrainingCancelled:
            self.finish("cancelled")
        except FaceDxError as exc:
            self.finish("failed", error=str(exc))
        except Exception as exc:
            log.exception("training job %s failed", job.id)
            self.finish("failed", error=f"Internal error during training ({type(exc).__name__}); see the server log.")
        else:
            self.finish("succeeded", model_version=version.version)
        finally:
            beating.set()

    def progress(self, event):
        """Store a progress event (epochs always, others at most twice a second); stop if cancelled."""
        from ml.training import TrainingCancelled

        job = self.job
        db.session.refresh(job, ["cancel_requested"])
        if job.cancel_requested:
            raise TrainingCancelled()
        if "epoch" in event:
            job.history_json = json.dumps(job.history + [event])
        elif time.monotonic() - self.last_write < PROGRESS_INTERVAL_S:
            return
        job.progress_json = json.dumps(dict(event, fraction=self.fraction(event)))
        db.session.commit()
        self.last_write = time.monotonic()

    def fraction(self, event):
        """Estimate how much of the whole run is done, 0..1, from one event."""
        options = self.job.options
        phase = event["phase"]
        if phase == "features":
            return 0.5 * event["done"] / max(event["total"], 1)
        if phase == "cross-validation":
            within = event.get("fold_epoch", 0) / max(event.get("fold_epochs", 1), 1)
            return 0.55 + 0.15 * (event["fold"] - 1 + within) / event["folds"]
        if phase == "nested selection":                                 # auto: the choice inside each fold
            return 0.7 + 0.15 * (event["fold"] - 1) / event["folds"]
        if phase == "head" and not options["fine_tune_epochs"]:        # the final head, after cross-validation
            return 0.85 + 0.1 * event["epoch"] / options["epochs"]
        if phase in ("head", "fine-tune"):                             # held-out run with fine-tuning
            done = event["epoch"] + (options["epochs"] if phase == "fine-tune" else 0)
            return 0.55 + 0.4 * done / (options["epochs"] + options["fine_tune_epochs"])
        return {"baselines": 0.5, "final head": 0.85, "evaluating": 0.95, "saving": 0.97}.get(phase, 0.0)

    def finish(self, status, **fields):
        job = self.job
        job.status, job.finished_at = status, utcnow()
        progress = dict(job.progress, phase=status)
        if status == "succeeded":
            progress["fraction"] = 1.0
        job.progress_json = json.dumps(progress)
        for name, value in fields.items():
            setattr(job, name, value)
        db.session.commit()
