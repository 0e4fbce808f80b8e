"""The `train` command (a training run here, progress on stderr) and the queue `worker` command."""
import click
from flask import current_app
from flask.cli import with_appcontext

from ml.errors import TrainingError
from ml.learning.options import OPTION_SPECS
from web.cli import cli_actor, remove_leftovers, user_errors
from web.models.summaries import percent, version_summary
from web.services import get_registry


class TrainingOptionType(click.ParamType):
    """A training option on the command line, parsed by its spec: a bad value is a usage error (exit status 2)."""

    def __init__(self, spec):
        self.spec = spec
        self.name = {int: "integer", float: "number", str: "text"}[spec.kind]

    def convert(self, value, param, ctx):
        try:
            return self.spec.parse(value)
        except TrainingError as error:
            self.fail(str(error), param, ctx)


def training_options(command):
    """Give `command` a --name option for every training option, with its spec's help and default."""
    for spec in reversed(OPTION_SPECS.values()):
        command = click.option(f"--{spec.name.replace('_', '-')}", spec.name, type=TrainingOptionType(spec),
                               default="auto" if spec.auto else spec.default, show_default=True,
                               metavar=f"[{'|'.join(spec.choices)}]" if spec.choices else None,
                               help=spec.describe())(command)
    return command


@click.command("train")
@with_appcontext
@click.option("--dataset", "dataset_name", required=True, help="Name of an imported dataset.")
@training_options
@user_errors
def train_command(dataset_name, **options):
    """Train a model on a dataset as a job run here: progress on stderr, then the new version and its evaluation.

    It takes the one training job's place: while it runs, another training is refused, and the other way round.
    """
    print_version(train_here(dataset_name, options))


def train_here(dataset_name, options):
    """Run a training job in this process, audited as the command line, printing its progress; return the version."""
    from sqlalchemy.orm import Session

    from web.db import db
    from web.jobs.records import job_settings
    from web.jobs.run import JobRun
    from web.training.actions import start_training

    job = start_training(cli_actor(), dataset_name, options, here=True)
    with Session(db.engine) as session:
        JobRun(session, job.id, job_settings(current_app.config), print_progress).run()
    db.session.refresh(job)
    if job.status != "succeeded":
        raise click.ClickException(job.error or f"Training job {job.id} was {job.status}.")
    return get_registry().get(job.model_version)


def print_version(version):
    """Print a new version's name and its evaluation."""
    summary = version_summary(version)
    click.echo(f"Version {version.version} (not active; `flask --app app models activate {version.version}`)")
    click.echo(f"{summary['pipeline']} + {summary['head']} head, {summary['evaluation_note']}")
    if not summary["useful"]:
        click.echo(f"NOT USEFUL: this model is {summary['useful_note']}")
    auc = "n/a" if summary["macro_roc_auc"] is None else f"{summary['macro_roc_auc']:.3f}"
    click.echo(f"Accuracy {percent(summary['accuracy'], summary['accuracy_std'])}  "
               f"macro F1 {percent(summary['macro_f1'], summary['macro_f1_std'])}  macro ROC-AUC {auc}")
    for name, scores in summary["baselines"].items():
        click.echo(f"  baseline {name:<10} accuracy {percent(scores['accuracy'], scores['accuracy_std'])}  "
                   f"macro F1 {percent(scores['macro_f1'], scores['macro_f1_std'])}")
    for label, row in version.card.metrics.per_class.items():
        click.echo(f"  {label:<24} precision {row['precision']:.2f}  recall {row['recall']:.2f}  "
                   f"F1 {row['f1']:.2f}  n {row['support']}")
    for row in version.card.metrics.candidates or []:
        click.echo(f"  candidate {row['pipeline']:<28} CV accuracy {percent(row['accuracy'], row['accuracy_std'])}"
                   f"{'  (chosen)' if row['chosen'] else ''}")


def print_progress(progress):
    """Print a training Progress record as a line on stderr (the share of the run done, the step in words), unless
    the line would repeat the last one: each fit of a fold is a step of the share, not a line of its own."""
    metrics = "".join(f"  {name} {value:.4f}" for name, value in progress.metrics.items())
    line = f"[{progress.fraction:4.0%}] {progress.words}{metrics}"
    if line != getattr(print_progress, "last_line", None):
        click.echo(line, err=True)
        print_progress.last_line = line


@click.command("worker")
@with_appcontext
def worker_command():
    """Run jobs (trainings, imports) from the Redis queue (FACEDX_REDIS_URL), one at a time, on this machine."""
    from rq import Worker

    from web.jobs.dispatch import QueueDispatcher, current_dispatcher

    dispatcher = current_dispatcher()
    if not isinstance(dispatcher, QueueDispatcher):
        raise click.ClickException("Set FACEDX_REDIS_URL to the Redis server the web nodes use.")
    remove_leftovers()
    click.echo(f"Waiting for jobs on {current_app.config['REDIS_URL']} ...")
    Worker([dispatcher.queue()], connection=dispatcher.connection()).work()
