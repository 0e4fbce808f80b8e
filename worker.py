"""The job process: runs one recorded job (a training or a dataset import) to its end.

A web worker starts it as `python -m worker JOB_ID` and sends its settings as JSON on stdin; a
queue worker (`flask --app app worker`) calls run_job(JOB_ID) and the settings come from its own
host's environment. It opens the database itself and never imports the web application.
"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")   # TensorFlow's start-up chatter hides real messages

from sqlalchemy import create_engine  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from config import Config  # noqa: E402
from web.jobs.run import JobRun  # noqa: E402


def run_job(job_id, settings=None, observe=None):
    """Run job `job_id` with `settings` over this host's FACEDX_* settings; return how it ended.

    `observe` is called with every Progress record, as the job records it.
    """
    os.umask(0o077)        # files 0600 and folders 0700, as every FaceDx process writes them
    settings = vars(Config()) | (settings or {})
    engine = create_engine(settings["SQLALCHEMY_DATABASE_URI"])
    try:
        with Session(engine) as session:
            return JobRun(session, job_id, settings, observe).run()
    finally:
        engine.dispose()


if __name__ == "__main__":
    run_job(int(sys.argv[1]), json.load(sys.stdin))
