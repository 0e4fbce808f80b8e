"""Who starts a job's process: a child process of this web worker, or a worker that takes it from a Redis queue.

The app chooses one dispatcher when it is created (a queue when FACEDX_REDIS_URL is set). Either way
the process runs worker.run_job, and its heartbeat in the job record tells whether it still lives.
"""
import json
import os
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

from flask import current_app

from ml.errors import FaceDxError
from ml.filelock import exclusive_lock
from web.records import utcnow

PROJECT_DIR = Path(__file__).resolve().parents[2]         # where worker.py is
QUEUE_NAME = "facedx-jobs"
QUEUE_JOB_TIMEOUT = 7 * 24 * 3600          # RQ's default (3 minutes) would kill any real training
QUEUE_KEEP_S = 7 * 24 * 3600
REDIS_TIMEOUT_S = 5        # connecting, and each reply: a frozen Redis must not hold a request for ever


class QueueUnavailable(FaceDxError):
    """The job queue (Redis) cannot be reached or does not answer: nothing was started (503)."""

    def __init__(self, error):
        super().__init__(f"The job queue (Redis) cannot be reached ({type(error).__name__}); nothing was started. "
                         "Try again once it is back, or ask the administrator.")


def init_app(app):
    """Choose the app's dispatcher from its settings, once."""
    url = app.config["REDIS_URL"]
    app.extensions["facedx.dispatcher"] = QueueDispatcher(url) if url else LocalDispatcher(app.config["INSTANCE_DIR"])


def current_dispatcher():
    """Return the dispatcher of the current app."""
    return current_app.extensions["facedx.dispatcher"]


def seconds_since(moment):
    return (utcnow() - moment).total_seconds()


class LocalDispatcher:
    """Run each job as `python -m worker JOB_ID`, a child process of this web worker, on this machine."""

    def __init__(self, instance_dir):
        self.lock_file = Path(instance_dir) / "job-start.lock"

    def start_lock(self):
        """Return the lock that serialises job starts across this machine's web workers and commands."""
        return exclusive_lock(self.lock_file)

    def submit(self, job, settings):
        """Start the job's process and return its pid; the settings go through a pipe (they hold the database's URL).

        The process is in no list that a web worker's exit waits for: a gunicorn restart does not wait
        for a training, which goes on and is adopted by the next server through its heartbeat.
        """
        process = subprocess.Popen([sys.executable, "-m", "worker", str(job.id)], cwd=PROJECT_DIR,
                                   stdin=subprocess.PIPE)
        with process.stdin:
            process.stdin.write(json.dumps(settings).encode())
        threading.Thread(target=process.wait, daemon=True).start()     # reap it when it ends
        return process.pid

    def ended(self, job):
        """Say whether the job's process is known to have ended: its pid names no running process here."""
        return job.pid is not None and not _process_exists(job.pid)

    def pending(self, job, timeout):
        """Say whether a job without a heartbeat yet may still be starting: it has one timeout to beat."""
        return seconds_since(job.created_at) < timeout

    def waiting(self, job):
        """Return what a queued job waits for, or None: a local one waits only for its process to start."""
        return None


class QueueDispatcher:
    """Put each job in a Redis queue (RQ) that `flask --app app worker` processes take jobs from, on any machine."""

    def __init__(self, url):
        self.url = url

    def connection(self):
        """Return a connection to the queue's Redis; pages that look at it must not hang on an unreachable host."""
        from redis import Redis

        return Redis.from_url(self.url, socket_connect_timeout=REDIS_TIMEOUT_S, socket_timeout=REDIS_TIMEOUT_S)

    def queue(self):
        """Return the queue that workers take jobs from."""
        from rq import Queue

        return Queue(QUEUE_NAME, connection=self.connection())

    @contextmanager
    def start_lock(self):
        """Hold the lock that serialises job starts across every web node and command (QueueUnavailable if none)."""
        from redis.exceptions import LockError, RedisError

        lock = self.connection().lock("facedx:job-start", timeout=30, blocking_timeout=30)
        try:
            acquired = lock.acquire()
        except RedisError as error:
            raise QueueUnavailable(error) from None
        if not acquired:
            raise QueueUnavailable(TimeoutError("another start held the lock for 30 s"))
        try:
            yield
        finally:
            try:
                lock.release()
            except (LockError, RedisError):      # it expires by itself after 30 s
                pass

    def submit(self, job, settings):
        """Queue the job; the worker that takes it uses its own host's settings. Return None: no pid here."""
        from redis.exceptions import RedisError

        try:
            self.queue().enqueue("worker.run_job", job.id, job_id=queue_id(job.id), job_timeout=QUEUE_JOB_TIMEOUT,
                                 result_ttl=QUEUE_KEEP_S, failure_ttl=QUEUE_KEEP_S)
        except RedisError as error:
            raise QueueUnavailable(error) from None

    def ended(self, job):
        """Its process runs on another machine: only its heartbeat tells whether it ended."""
        return False

    def pending(self, job, timeout):
        """Say whether a job that no worker has taken yet is still in the queue."""
        from redis.exceptions import RedisError
        from rq.exceptions import NoSuchJobError
        from rq.job import Job

        try:
            status = Job.fetch(queue_id(job.id), connection=self.connection()).get_status()
        except NoSuchJobError:
            return False
        except RedisError:          # the queue is unreachable for now: that says nothing about the job
            return True
        return status in ("queued", "started", "deferred", "scheduled")

    def waiting(self, job):
        """Say whether any worker listens to the queue, so nobody waits on a job no one will run."""
        from redis.exceptions import RedisError
        from rq import Worker

        try:
            workers = Worker.count(queue=self.queue())
        except RedisError:
            return "The job queue (Redis) cannot be reached; the job starts once it is back and a worker takes it."
        if workers == 0:
            return ("No worker is connected to the job queue: start `flask --app app worker` on a training "
                    "host; the job starts as soon as one connects.")
        return f"Waiting for a worker to take the job ({workers} connected)."


def queue_id(job_id):
    return f"facedx-job-{job_id}"


def _process_exists(pid):
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
