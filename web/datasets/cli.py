"""The `dataset` commands: import an archive or folder here (progress on stderr), list and delete datasets."""
import sys

import click
from flask import current_app
from flask.cli import AppGroup

from web.cli import cli_actor, counted_on, user_errors
from web.datasets.actions import delete_dataset, import_here
from web.readable import plural
from web.services import datasets_root

dataset_cli = AppGroup("dataset", help="Import and list labelled datasets.")


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
    from ml.photos.faces import FaceOptions

    face = FaceOptions(face_detector or current_app.config["FACE_DETECTOR"], face_fallback)
    with click.progressbar(length=1, label="Importing", file=sys.stderr) as bar:
        dataset = import_here(cli_actor(), path, name, face, counted_on(bar))
    manifest = dataset.manifest
    click.echo(f"Dataset {dataset.id}: {len(manifest.images)} photos in {len(manifest.labels)} classes")
    for label, count in manifest.counts.items():
        click.echo(f"  {count:5d}  {label}")
    if manifest.rejected:
        click.echo(f"Rejected {plural(len(manifest.rejected), 'file')}:")
        for item in manifest.rejected:
            click.echo(f"  {item['file']}: {item['reason']}")


@dataset_cli.command("list")
def dataset_list():
    """List the imported datasets."""
    from ml.datasets import list_datasets

    for dataset in list_datasets(datasets_root()):
        counts = ", ".join(f"{label} {n}" for label, n in dataset.manifest.counts.items())
        click.echo(f"{dataset.id}\t{len(dataset.manifest.images)} photos\t{counts}")


@dataset_cli.command("delete")
@click.argument("name")
@user_errors
def dataset_delete(name):
    """Delete a dataset with its photos and cached features."""
    delete_dataset(cli_actor(), name)
    click.echo(f"Deleted dataset {name}.")
