"""The `flask --app app ...` commands: datasets, training, model versions and predictions."""
import json
import os
import re
import sys
from functools import wraps
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from ml.errors import FaceDxError, TrainingError
from ml.options import OPTION_SPECS
from web import datasets_root, get_predictor, get_registry, import_limits
from web.summaries import percent, version_summary

dataset_cli = AppGroup("dataset", help="Import and list labelled datasets.")
models_cli = AppGroup("models", help="List, activate, roll back, export and import model versions.")
user_cli = AppGroup("user", help="Create accounts and set passwords.")
token_cli = AppGroup("token", help="Create API tokens.")
photos_cli = AppGroup("photos", help="Kept patient photos (only with FACEDX_KEEP_PHOTOS_DAYS > 0).")
MIN_PASSWORD_LENGTH = 10
USER_NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")


def user_errors(command):
    """Turn errors a user caused into a clear message and exit status 1, never a traceback."""
    @wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except FaceDxError as exc:
            raise click.ClickException(str(exc)) from None
    return wrapper


@dataset_cli.command("import")
@click.argument("path", type=click.Path(exists=True, readable=True))
@click.option("--name", required=True, help="Dataset name: letters, digits, '-' or '_'.")
@click.option("--face-detector", type=click.Choice(["mtcnn", "haar"]), default=None,
              help="Face detector (default: the FACEDX_FACE_DETECTOR setting).")
@click.option("--face-fallback", type=click.Choice(["none", "whole"]), default="none", show_default=True,
              help="'whole': use the whole photo when no face is found (photos that are already face crops).")
@user_errors
def dataset_import(path, name, face_detector, face_fallback):
    """Import a zip or folder with one sub-folder of photos per class."""
    from ml.datasets import import_dataset
    from ml.faces import FaceOptions

    face = FaceOptions(face_detector or current_app.config["FACE_DETECTOR"], face_fallback)
    with click.progressbar(length=1, label="Importing", file=sys.stderr) as bar:
        def progress(done, total):
            bar.length = total
            bar.update(done - bar.pos)
        dataset = import_dataset(path, name, datasets_root(), import_limits(), face, progress)
    manifest = dataset.manifest
    click.echo(f"Dataset {dataset.id}: {len(manifest['images'])} photos in {len(manifest['labels'])} classes")
    for label, count in manifest["counts"].items():
        click.echo(f"  {count:5d}  {label}")
    if manifest["rejected"]:
        click.echo(f"Rejected {len(manifest['rejected'])} file(s):")
        for item in manifest["rejected"]:
            click.echo(f"  {item['file']}: {item['reason']}")


@dataset_cli.command("list")
def dataset_list():
    """List the imported datasets."""
    from ml.datasets import list_datasets

    for dataset in list_datasets(datasets_root()):
        counts = ", ".join(f"{label} {n}" for label, n in dataset.manifest["counts"].items())
        click.echo(f"{dataset.id}\t{len(dataset.manifest['images'])} photos\t{counts}")


@dataset_cli.command("delete")
@click.argument("name")
@user_errors
def dataset_delete(name):
    """Delete a dataset with its photos and cached features."""
    from ml.datasets import delete_dataset

    delete_dataset(datasets_root(), name)
    click.echo(f"Deleted dataset {name}.")


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
    """Train a model on a dataset; print progress, the new version and its evaluation."""
    from ml.datasets import get_dataset
    from ml.options import TrainingOptions
    from ml.training import train

    checked = TrainingOptions(**options)
    dataset = get_dataset(datasets_root(), dataset_name)
    version = train(dataset, checked, get_registry(), current_app.config["PRETRAINED_DIRS"], print_progress)
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
    for label, row in version.card.metrics["per_class"].items():
        click.echo(f"  {label:<24} precision {row['precision']:.2f}  recall {row['recall']:.2f}  "
                   f"F1 {row['f1']:.2f}  n {row['support']}")
    for row in version.card.metrics.get("candidates") or []:
        click.echo(f"  candidate {row['pipeline']:<28} CV accuracy {percent(row['accuracy'], row['accuracy_std'])}"
                   f"{'  (chosen)' if row['chosen'] else ''}")


def print_progress(event):
    """Print one training progress event as a line on stderr."""
    phase = event["phase"]
    if "epoch" in event:
        numbers = "  ".join(f"{k} {event[k]:.4f}" for k in ("loss", "accuracy", "val_loss", "val_accuracy")
                            if k in event)
        click.echo(f"{phase} epoch {event['epoch']}/{event['epochs']}  {numbers}", err=True)
    elif phase == "features":
        click.echo(f"features {event['done']}/{event['total']}", err=True)
    elif phase in ("cross-validation", "nested selection"):
        click.echo(f"{phase} fold {event['fold']}/{event['folds']}", err=True)
    else:
        click.echo(phase, err=True)


@models_cli.command("list")
def models_list():
    """List model versions, newest first; the active one is marked with *."""
    registry = get_registry()
    pointer = registry.pointer()
    if pointer.get("damaged"):
        click.echo(f"No model is being served: {pointer['damaged']}.", err=True)
    active = pointer.get("version")
    for version in registry.versions():
        row = version_summary(version, active)
        mark = "*" if row["active"] else " "
        flag = "" if row["useful"] else "\tNOT USEFUL: does not clearly beat the majority class"
        click.echo(f"{mark} {row['version']}\t{row['dataset']}\t{row['backbone']}/{row['weights']} + {row['head']}"
                   f"\taccuracy {percent(row['accuracy'], row['accuracy_std'])} ({row['evaluation']}){flag}")
    for broken in registry.broken():
        mark = "*" if broken.version == active else " "
        click.echo(f"{mark} {broken.version}\tDAMAGED: {broken.problem}")


@models_cli.command("activate")
@click.argument("version")
@click.option("--force", is_flag=True, help="Activate a version flagged as not useful.")
@user_errors
def models_activate(version, force):
    """Make VERSION the model that serves predictions."""
    get_registry().activate(version, force)
    click.echo(f"Version {version} is active.")


@models_cli.command("rollback")
@user_errors
def models_rollback():
    """Re-activate the version that was active before the current one."""
    click.echo(f"Version {get_registry().rollback()} is active again.")


@models_cli.command("export")
@click.argument("version")
@click.argument("file", type=click.Path(dir_okay=False, writable=True))
@user_errors
def models_export(version, file):
    """Write VERSION as a bundle (zip) to FILE, to import at another site."""
    from ml.bundles import export_bundle
    from web.bundles import bundle_key
    from web.db import audit, db

    found = get_registry().get(version)
    target = Path(file)
    staging = target.with_name(f".{target.name}.partial")
    try:
        with open(staging, "wb") as stream:
            export_bundle(found, stream, bundle_key())
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)
    audit(cli_actor(), "model.export", version)
    db.session.commit()
    click.echo(f"Version {version} written to {target}{' (signed)' if bundle_key() else ''}.")


@models_cli.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@user_errors
def models_import(file):
    """Import a bundle exported at another site as a new version (not active)."""
    from web.bundles import bundle_upload

    with open(file, "rb") as stream:
        version = bundle_upload(stream, file, cli_actor())
    click.echo(f"Version {version.version} imported; activate it with "
               f"`flask --app app models activate {version.version}`.")


def cli_actor():
    """Return the audit log's name for the command line: cli:<the operating-system user>."""
    import getpass

    return f"cli:{getpass.getuser()}"


@click.command("predict")
@with_appcontext
@click.argument("image", type=click.File("rb"))
@user_errors
def predict_command(image):
    """Print the prediction for one photo as JSON."""
    prediction = get_predictor().predict(image.read())
    click.echo(json.dumps(prediction.as_dict(), indent=2))


def read_password():
    """Ask for a password at the terminal (twice), or read one line from stdin when it is not a terminal."""
    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise click.ClickException(f"A password needs at least {MIN_PASSWORD_LENGTH} characters.")
    return password


def find_user(name):
    from web.db import User, db

    user = db.session.execute(db.select(User).filter_by(username=name)).scalar_one_or_none()
    if user is None:
        raise click.ClickException(f"There is no user named {name!r}.")
    return user


@user_cli.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(["admin", "doctor"]), required=True)
def user_create(name, role):
    """Create an account; the password comes from the terminal or stdin."""
    from web.db import User, db

    if not USER_NAME.fullmatch(name):
        raise click.ClickException("A user name is 1-64 letters, digits, '.', '-', '_' or '@'.")
    if db.session.execute(db.select(User).filter_by(username=name)).scalar_one_or_none():
        raise click.ClickException(f"A user named {name!r} already exists.")
    user = User(username=name, role=role)
    user.set_password(read_password())
    db.session.add(user)
    db.session.commit()
    click.echo(f"Created {role} {name}.")


@user_cli.command("password")
@click.argument("name")
def user_password(name):
    """Set a user's password; it comes from the terminal or stdin."""
    from web.db import db

    user = find_user(name)
    user.set_password(read_password())
    user.session_version += 1          # sessions opened with the old password end
    db.session.commit()
    click.echo(f"Password of {name} changed.")


@token_cli.command("create")
@click.argument("name")
def token_create(name):
    """Print a new API token for user NAME (stored hashed: it is shown only now)."""
    from web.db import ApiToken, db

    row, token = ApiToken.issue(find_user(name))
    db.session.add(row)
    db.session.commit()
    click.echo(f"API token for {name} (shown once): {token}")


@photos_cli.command("purge")
def photos_purge():
    """Delete kept photos older than FACEDX_KEEP_PHOTOS_DAYS (all of them when keeping is off)."""
    from web.privacy import purge_photos

    click.echo(f"Deleted {purge_photos()} kept photo(s).")


@click.command("worker")
@with_appcontext
def worker_command():
    """Run training jobs from the Redis queue (FACEDX_REDIS_URL), one at a time, on this machine."""
    from rq import Worker

    from web.jobs import redis_connection, training_queue

    if not current_app.config["REDIS_URL"]:
        raise click.ClickException("Set FACEDX_REDIS_URL to the Redis server the web nodes use.")
    click.echo(f"Waiting for training jobs on {current_app.config['REDIS_URL']} ...")
    Worker([training_queue()], connection=redis_connection()).work()


@click.command("setup")
@with_appcontext
def setup_command():
    """Bring the database schema up to date; on first start create an admin with a random password."""
    import secrets

    from flask_migrate import upgrade

    from web.db import User, db
    from web.jobs import reconcile

    from web.privacy import purge_photos

    upgrade()
    reconcile()
    purge_photos()
    if db.session.execute(db.select(User).limit(1)).scalar_one_or_none() is None:
        password = secrets.token_urlsafe(12)
        admin = User(username="admin", role="admin")
        admin.set_password(password)
        db.session.add(admin)
        db.session.commit()
        click.echo("Created the first administrator. Note the password now: it is not shown again.")
        click.echo(f"  user name: admin\n  password:  {password}")


def init_app(app):
    """Register the commands with the application."""
    for command in (dataset_cli, models_cli, user_cli, token_cli, photos_cli, train_command, predict_command,
                    worker_command, setup_command):
        app.cli.add_command(command)
