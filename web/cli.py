"""The `flask --app app ...` commands: what they share (errors, the audit name), `setup`, and their registration.

Each area keeps its own commands (web/<area>/cli.py). Nothing here imports TensorFlow: a command
that needs it imports it when it runs, so `flask --app app user --help` starts at once.
"""
from functools import wraps

import click
from flask import current_app
from flask.cli import with_appcontext

from ml.errors import DiskFull, FaceDxError, is_disk_full


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


def cli_actor():
    """Return the audit log's name for the command line: cli:<the operating-system user>."""
    import getpass

    return f"cli:{getpass.getuser()}"


def counted_on(bar):
    """Return an import's progress callback that moves a click progress bar photo by photo (start-up counts none)."""
    def progress(step):
        if step.total is not None:
            bar.length = step.total
            bar.update(step.done - bar.pos)
    return progress


def remove_leftovers():
    """Remove the staging folders and temporary files of imports, uploads and trainings that were interrupted.

    What a job still running owns is kept; what none owns goes at once (after a minute's quiet).
    """
    from ml.cleanup import LiveJobs, remove_stale
    from web.db import db
    from web.jobs.records import alive
    from web.records import ACTIVE_STATES, Job

    jobs = [job for job in db.session.execute(db.select(Job).filter(Job.status.in_(ACTIVE_STATES)))
            .scalars() if alive(job)]
    imports = [job for job in jobs if job.kind == "import"]
    live = LiveJobs(archives={job.options.get("upload") for job in imports}, datasets={job.dataset for job in imports},
                    any=bool(jobs))
    remove_stale(current_app.config["DATA_DIR"], current_app.config["STALE_AFTER_S"], live)


@click.command("setup")
@with_appcontext
def setup_command():
    """Bring the database schema up to date; on first start create an admin with a random password."""
    import secrets

    from flask_migrate import upgrade

    from web.db import db
    from web.doctor.privacy import purge_photos, purge_thumbnails
    from web.jobs.records import reconcile
    from web.records import User

    upgrade()
    reconcile()
    purge_photos()
    purge_thumbnails()
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
    """Register every area's commands with the application."""
    from web.accounts.cli import token_cli, user_cli
    from web.datasets.cli import dataset_cli
    from web.demo import demo_command
    from web.doctor.cli import photos_cli, predict_command
    from web.models.cli import models_cli
    from web.training.cli import train_command, worker_command

    for command in (dataset_cli, models_cli, user_cli, token_cli, photos_cli, train_command, predict_command,
                    worker_command, setup_command, demo_command):
        app.cli.add_command(command)
