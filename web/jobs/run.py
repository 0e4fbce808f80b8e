"""A job's own side: run one recorded job, report its progress, honour a cancel, record how it ended.

It needs no Flask application, only a database session and the settings: the job process
(worker.py) builds them itself, and `flask train` hands over its own to run a job in the foreground.
"""
import json
import logging
import threading
import time
from pathlib import Path

from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError

from ml.errors import DiskFull, FaceDxError
from ml.progress import Cancelled, Progress
from web.records import AuditEvent, Job, disk_full, utcnow
from web.settings import datasets_root, import_limits

log = logging.getLogger(__name__)
PROGRESS_INTERVAL_S = 0.5
HEARTBEAT_S = 5


class JobRun:
    """One job run to its end in this process."""

    def __init__(self, session, job_id, settings, observe=None):
        self.session, self.settings, self.observe = session, settings, observe
        self.job = session.get(Job, job_id)
        self.last_write, self.last_phase = 0.0, None

    def run(self):
        """Run the job, record how it ended and return that status."""
        job = self.job
        if job.cancel_requested:            # cancelled while it waited for a worker
            release(self)
            return self.finish("cancelled")
        job.status, job.started_at = "running", job.started_at or utcnow()
        job.progress_json = json.dumps(Progress("starting").as_dict())     # the first seconds have words too
        self.session.commit()
        beating = threading.Event()
        threading.Thread(target=heartbeat, args=(self.session.get_bind(), job.id, beating,
                                                 self.settings["JOB_HEARTBEAT_TIMEOUT"]), daemon=True).start()
        try:
            outcome = KINDS[job.kind](self)
        except Cancelled:
            return self.finish("cancelled")
        except KeyboardInterrupt:           # Ctrl-C on `flask train`: the job ends as cancelled, then the command
            self.finish("cancelled")
            raise
        except FaceDxError as exc:
            return self.finish("failed", error=str(exc))
        except Exception as exc:
            log.exception("%s %s failed", job.kind, job.id)
            return self.finish("failed", error=f"Internal error in the {job.kind} job ({type(exc).__name__}); "
                                               "see the server log.")
        finally:
            beating.set()
            release(self)
        return self.finish_with(outcome)

    def report(self, progress):
        """Record a Progress (curve points and a new phase always, others at most twice a second); stop when a
        cancel was asked."""
        if self.observe:
            self.observe(progress)
        job = self.job
        if not progress.curve_point and progress.fraction < 1 and progress.phase == self.last_phase and \
                time.monotonic() - self.last_write < PROGRESS_INTERVAL_S:
            return
        self.session.refresh(job, ["cancel_requested"])
        if job.cancel_requested:
            raise Cancelled()
        if progress.curve_point:
            job.history_json = json.dumps(job.history + [progress.as_dict()])
        job.progress_json = json.dumps(progress.as_dict())
        self.session.commit()
        self.last_write, self.last_phase = time.monotonic(), progress.phase

    def finish_with(self, outcome):
        """Record a success with what the job made; if that cannot be recorded, undo what it made."""
        fields, undo = outcome
        try:
            return self.finish("succeeded", **fields)
        except SQLAlchemyError as exc:
            self.session.rollback()
            undo()
            error = str(DiskFull()) if disk_full(exc) else f"The outcome could not be recorded ({type(exc).__name__})."
            return self.finish("failed", error=error)

    def finish(self, status, **fields):
        """Record the job's end: its status, the fields it set and its last progress; return the status."""
        job = self.job
        job.status, job.finished_at = status, utcnow()
        job.progress_json = json.dumps(dict(job.progress, phase=status))     # its last step's words stay
        for name, value in fields.items():
            setattr(job, name, value)
        self.session.commit()
        return status


def run_training(run):
    """Train on the job's dataset; return (the new version, nothing to undo: an unused version harms nobody)."""
    from ml.datasets import get_dataset
    from ml.learning.options import TrainingOptions
    from ml.learning.training import train
    from ml.versions.registry import ModelRegistry

    job, settings = run.job, run.settings
    dataset = get_dataset(datasets_root(settings), job.dataset)
    version = train(dataset, TrainingOptions.from_dict(job.options), ModelRegistry(settings["MODELS_DIR"]),
                    settings["PRETRAINED_DIRS"], run.report)
    return {"model_version": version.version}, lambda: None


def run_import(run):
    """Import the job's uploaded archive as its dataset, audited; return (nothing, how to undo the import)."""
    from ml.datasets import delete_dataset, import_dataset
    from ml.photos.faces import FaceOptions

    job, settings, options = run.job, run.settings, run.job.options
    root = datasets_root(settings)
    import_dataset(upload_of(run), job.dataset, root, import_limits(settings),
                   FaceOptions(options["face_detector"], options["face_fallback"]), run.report, options["source"])
    run.session.add(AuditEvent(username=job.created_by, action="dataset.import", target=job.dataset))
    return {}, lambda: delete_dataset(root, job.dataset)


KINDS = {"training": run_training, "import": run_import}


def upload_of(run):
    """Return the uploaded archive an import job reads (kept in the data folder's temporary folder)."""
    return Path(run.settings["UPLOAD_DIR"]) / "tmp" / run.job.options["upload"]


def release(run):
    """Remove what only the job needed: an import's uploaded archive, whatever the import's end."""
    if run.job.kind == "import":
        upload_of(run).unlink(missing_ok=True)


def heartbeat(engine, job_id, stop, timeout):
    """Write the job's heartbeat, several times per timeout, until `stop` is set (a thread of the job's process)."""
    while not stop.is_set():
        try:
            with engine.begin() as connection:
                connection.execute(update(Job.__table__).where(Job.__table__.c.id == job_id)
                                   .values(heartbeat_at=utcnow()))
        except SQLAlchemyError as exc:      # a busy or full database: the next beat may get through
            log.warning("job %s: heartbeat not written (%s)", job_id, type(exc).__name__)
        stop.wait(min(HEARTBEAT_S, timeout / 4))
