"""Starting a training, one function for the page, the API and the command line: checks, starts, audits, commits."""
from dataclasses import asdict

from ml.datasets import get_dataset
from ml.learning.options import TrainingOptions
from web.db import audit, db
from web.jobs.records import start_job
from web.services import datasets_root


def start_training(actor, dataset_name, options, here=False):
    """Check the dataset and options, start a training job (see start_job) and audit it; return the job.

    `actor` is a user or the command line's name; with `here` the caller runs the job itself.
    """
    checked = TrainingOptions.from_dict(options)
    get_dataset(datasets_root(), dataset_name)
    job = start_job("training", dataset_name, asdict(checked), getattr(actor, "username", actor), here)
    audit(actor, "training.start", f"job {job.id} on {job.dataset}")
    db.session.commit()
    return job
