"""The `models` commands: list, activate, roll back, delete, export and import model versions."""
import os
from pathlib import Path

import click
from flask.cli import AppGroup

from web.cli import cli_actor, user_errors
from web.models.actions import activate, delete_version, rollback
from web.models.summaries import percent, version_summary
from web.services import get_registry

models_cli = AppGroup("models", help="List, activate, roll back, export and import model versions.")


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
    activate(cli_actor(), version, force)
    click.echo(f"Version {version} is active.")


@models_cli.command("delete")
@click.argument("version")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@user_errors
def models_delete(version, yes):
    """Delete VERSION (not the active one; a damaged one too) with its files."""
    if not yes:
        click.confirm(f"Delete model version {version} and its files?", abort=True)
    delete_version(cli_actor(), version)
    click.echo(f"Deleted model version {version}.")


@models_cli.command("rollback")
@user_errors
def models_rollback():
    """Re-activate the version that was active before the current one."""
    version = rollback(cli_actor())
    click.echo(f"Version {version} is active again.")


@models_cli.command("export")
@click.argument("version")
@click.argument("file", type=click.Path(dir_okay=False, writable=True))
@user_errors
def models_export(version, file):
    """Write VERSION as a bundle (zip) to FILE, to import at another site."""
    from web.models.bundles import bundle_key, export_version

    get_registry().get(version)
    target = Path(file)
    staging = target.with_name(f".{target.name}.partial")
    try:
        with open(staging, "wb") as stream:
            export_version(cli_actor(), version, stream)
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)
    click.echo(f"Version {version} written to {target}{' (signed)' if bundle_key() else ''}.")


@models_cli.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@user_errors
def models_import(file):
    """Import a bundle exported at another site as a new version (not active)."""
    from web.models.bundles import bundle_upload

    with open(file, "rb") as stream:
        version = bundle_upload(stream, file, cli_actor())
    click.echo(f"Version {version.version} imported; activate it with "
               f"`flask --app app models activate {version.version}`.")
