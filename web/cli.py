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

from ml.errors import DiskFull, FaceDxError, TrainingError, is_disk_full
from ml.learning.options import OPTION_SPECS
from web import datasets_root, get_predictor, get_registry, import_limits
from web.summaries import percent, version_summary

dataset_cli = AppGroup("dataset", help="Import and list labelled datasets.")
models_cli = AppGroup("models", help="List, activate, roll back, export and import model versions.")
user_cli = AppGroup("user", help="Create, list, disable, enable and delete accounts; set passwords.")
token_cli = AppGroup("token", help="Create, list and revoke API tokens.")
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
        except OSError as exc:
            if is_disk_full(exc):
                raise click.ClickException(str(DiskFull())) from None
            raise
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
    from ml.photos.faces import FaceOptions
    from web.db import audit, db

    face = FaceOptions(face_detector or current_app.config["FACE_DETECTOR"], face_fallback)
    with click.progressbar(length=1, label="Importing", file=sys.stderr) as bar:
        def progress(step):
            bar.length = step.total
            bar.update(step.done - bar.pos)
        dataset = import_dataset(path, name, datasets_root(), import_limits(), face, progress)
    audit(cli_actor(), "dataset.import", name)
    db.session.commit()
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
    """Train a model on a dataset as a job run here: progress on stderr, then the new version and its evaluation.

    It takes the one training job's place: while it runs, another training is refused, and the other way round.
    """
    from sqlalchemy.orm import Session

    from web.db import audit, db
    from web.jobrun import JobRun
    from web.jobs import job_settings, start_training

    job = start_training(dataset_name, options, cli_actor(), here=True)
    audit(cli_actor(), "training.start", f"job {job.id} on {job.dataset}")
    db.session.commit()
    with Session(db.engine) as session:
        JobRun(session, job.id, job_settings(current_app.config), print_progress).run()
    db.session.refresh(job)
    if job.status != "succeeded":
        raise click.ClickException(job.error or f"Training job {job.id} was {job.status}.")
    print_version(get_registry().get(job.model_version))


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
    for label, row in version.card.metrics["per_class"].items():
        click.echo(f"  {label:<24} precision {row['precision']:.2f}  recall {row['recall']:.2f}  "
                   f"F1 {row['f1']:.2f}  n {row['support']}")
    for row in version.card.metrics.get("candidates") or []:
        click.echo(f"  candidate {row['pipeline']:<28} CV accuracy {percent(row['accuracy'], row['accuracy_std'])}"
                   f"{'  (chosen)' if row['chosen'] else ''}")


def print_progress(progress):
    """Print one training Progress record as a line on stderr: the share of the run done, the step, its counts."""
    step = progress.phase
    if progress.curve_point:
        step += f" epoch {progress.epoch}/{progress.epochs}  " + "  ".join(
            f"{name} {value:.4f}" for name, value in progress.metrics.items())
    elif progress.total is not None:
        step += f" {progress.done}/{progress.total}"
    elif progress.fold is not None:
        step += f" fold {progress.fold}/{progress.folds}"
    click.echo(f"[{progress.fraction:4.0%}] {step}", err=True)


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
    from web.db import audit, db

    get_registry().activate(version, force)
    audit(cli_actor(), "model.activate", f"{version} (forced: flagged as not useful)" if force else version)
    db.session.commit()
    click.echo(f"Version {version} is active.")


@models_cli.command("delete")
@click.argument("version")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@user_errors
def models_delete(version, yes):
    """Delete VERSION (not the active one; a damaged one too) with its files."""
    from web.versions import delete_version

    if not yes:
        click.confirm(f"Delete model version {version} and its files?", abort=True)
    delete_version(cli_actor(), version)
    click.echo(f"Deleted model version {version}.")


@models_cli.command("rollback")
@user_errors
def models_rollback():
    """Re-activate the version that was active before the current one."""
    from web.db import audit, db

    version = get_registry().rollback()
    audit(cli_actor(), "model.rollback", version)
    db.session.commit()
    click.echo(f"Version {version} is active again.")


@models_cli.command("export")
@click.argument("version")
@click.argument("file", type=click.Path(dir_okay=False, writable=True))
@user_errors
def models_export(version, file):
    """Write VERSION as a bundle (zip) to FILE, to import at another site."""
    from ml.versions.bundles import export_bundle
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
    from web.db import User, audit, db

    if not USER_NAME.fullmatch(name):
        raise click.ClickException("A user name is 1-64 letters, digits, '.', '-', '_' or '@'.")
    if db.session.execute(db.select(User).filter_by(username=name)).scalar_one_or_none():
        raise click.ClickException(f"A user named {name!r} already exists.")
    user = User(username=name, role=role)
    user.set_password(read_password())
    db.session.add(user)
    audit(cli_actor(), "user.create", f"{name} ({role})")
    db.session.commit()
    click.echo(f"Created {role} {name}.")


@user_cli.command("password")
@click.argument("name")
def user_password(name):
    """Set a user's password (it comes from the terminal or stdin); end their sessions and API tokens."""
    from web.db import audit, db

    find_user(name).change_password(read_password())
    audit(cli_actor(), "user.password", name)
    db.session.commit()
    click.echo(f"Password of {name} changed; their sessions ended and their API tokens were revoked.")


@user_cli.command("list")
def user_list():
    """List the accounts: name, role, state, number of API tokens, creation time (UTC)."""
    from web.db import ApiToken, User, db

    counts = dict(db.session.execute(db.select(ApiToken.user_id, db.func.count()).group_by(ApiToken.user_id)).all())
    for user in db.session.execute(db.select(User).order_by(User.username)).scalars():
        state = "enabled" if user.is_active else f"disabled since {user.disabled_at:%Y-%m-%d %H:%M}"
        click.echo(f"{user.username}\t{user.role}\t{state}\t{counts.get(user.id, 0)} token(s)"
                   f"\tcreated {user.created_at:%Y-%m-%d %H:%M}")


@user_cli.command("disable")
@click.argument("name")
def user_disable(name):
    """Stop NAME from logging in; end their sessions and revoke their API tokens."""
    from web.db import audit, db

    revoked = find_user(name).disable()
    audit(cli_actor(), "user.disable", f"{name} ({revoked} token(s) revoked)")
    db.session.commit()
    click.echo(f"Disabled {name}; {revoked} API token(s) revoked and every session ended.")


@user_cli.command("enable")
@click.argument("name")
def user_enable(name):
    """Let a disabled account log in again (its old sessions and API tokens stay void)."""
    from web.db import audit, db

    find_user(name).enable()
    audit(cli_actor(), "user.enable", name)
    db.session.commit()
    click.echo(f"Enabled {name}.")


@user_cli.command("delete")
@click.argument("name")
@click.confirmation_option(prompt="Delete this account and its API tokens?")
def user_delete(name):
    """Delete NAME's account and its API tokens (the audit log keeps the name)."""
    from web.db import audit, db

    db.session.delete(find_user(name))       # the database deletes its tokens (ON DELETE CASCADE)
    audit(cli_actor(), "user.delete", name)
    db.session.commit()
    click.echo(f"Deleted {name}.")


@token_cli.command("create")
@click.argument("name")
def token_create(name):
    """Print a new API token for user NAME (stored hashed: it is shown only now)."""
    from web.db import ApiToken, audit, db

    row, token = ApiToken.issue(find_user(name))
    db.session.add(row)
    db.session.flush()
    audit(cli_actor(), "token.create", f"{row.id} of {name}")
    db.session.commit()
    click.echo(f"API token {row.id} for {name} (shown once): {token}")


@token_cli.command("list")
@click.argument("name", required=False)
def token_list(name):
    """List the API tokens (of user NAME, when given): ID, user, creation time (UTC); never the tokens."""
    from web.db import ApiToken, User, db

    # An outer join: a token whose account was removed outside the application is listed too.
    query = db.select(ApiToken.id, ApiToken.user_id, User.username, ApiToken.created_at).outerjoin(
        User, User.id == ApiToken.user_id).order_by(ApiToken.id)
    if name:
        query = query.where(User.id == find_user(name).id)
    for token_id, user_id, username, created_at in db.session.execute(query):
        click.echo(f"{token_id}\t{username or removed_user(user_id)}\tcreated {created_at:%Y-%m-%d %H:%M}")


@token_cli.command("revoke")
@click.argument("token_id", metavar="ID", type=click.IntRange(1, 2 ** 63 - 1))
def token_revoke(token_id):
    """Revoke the API token ID (`flask token list` shows the IDs)."""
    from web.db import ApiToken, audit, db

    token = db.session.get(ApiToken, token_id)
    if token is None:
        raise click.ClickException(f"There is no API token {token_id}.")
    owner = token.user.username if token.user is not None else removed_user(token.user_id)
    audit(cli_actor(), "token.revoke", f"{token_id} of {owner}")
    db.session.delete(token)
    db.session.commit()
    click.echo(f"Revoked API token {token_id} of {owner}.")


def removed_user(user_id):
    """Name an account that no longer exists (removed from the database outside the application)."""
    return f"removed account {user_id}"


@photos_cli.command("purge")
def photos_purge():
    """Delete kept photos older than FACEDX_KEEP_PHOTOS_DAYS (all of them when keeping is off)."""
    from web.privacy import purge_photos

    click.echo(f"Deleted {purge_photos()} kept photo(s).")


def remove_leftovers():
    """Remove the staging folders and temporary files of imports, uploads and trainings that were interrupted.

    What a job still running owns is kept; what none owns goes at once (after a minute's quiet).
    """
    from ml.cleanup import LiveJobs, remove_stale
    from web.db import ACTIVE_STATES, TrainingJob, db
    from web.jobs import alive

    jobs = [job for job in db.session.execute(db.select(TrainingJob).filter(TrainingJob.status.in_(ACTIVE_STATES)))
            .scalars() if alive(job)]
    imports = [job for job in jobs if job.kind == "import"]
    live = LiveJobs(archives={job.options.get("upload") for job in imports}, datasets={job.dataset for job in imports},
                    any=bool(jobs))
    remove_stale(current_app.config["DATA_DIR"], current_app.config["STALE_AFTER_S"], live)


@click.command("worker")
@with_appcontext
def worker_command():
    """Run jobs (trainings, imports) from the Redis queue (FACEDX_REDIS_URL), one at a time, on this machine."""
    from rq import Worker

    from web.dispatch import QueueDispatcher, current_dispatcher

    dispatcher = current_dispatcher()
    if not isinstance(dispatcher, QueueDispatcher):
        raise click.ClickException("Set FACEDX_REDIS_URL to the Redis server the web nodes use.")
    remove_leftovers()
    click.echo(f"Waiting for jobs on {current_app.config['REDIS_URL']} ...")
    Worker([dispatcher.queue()], connection=dispatcher.connection()).work()


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
    remove_leftovers()
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
