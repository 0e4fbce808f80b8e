"""`flask --app app demo`: the whole workflow on a demo dataset, from nothing to an active model, in minutes.

It builds two people's photos from those that ship with scikit-image and matplotlib
(ml/datasets/demo.py), imports them, trains, and activates the version, each step audited as
the command line, as an administrator would do it from the pages. It is a demo of the
workflow, not a clinical model: the dataset, the classes and the model's intended use say so.
"""
import sys
import tempfile
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from ml.datasets.demo import DEMO_DATASET, INTENDED_USE, try_photo, write_demo_folder
from ml.errors import DatasetNotFound
from web.cli import cli_actor, counted_on, user_errors
from web.services import datasets_root


@click.command("demo")
@with_appcontext
@click.option("--per-person", type=click.IntRange(5, 200), default=12, show_default=True,
              help="Photos made of each of the two people.")
@click.option("--backbone", default="auto", show_default=True,
              help="The training's pipeline (`flask --app app train --help` lists them).")
@user_errors
def demo_command(per_person, backbone):
    """Build the demo dataset (two people), import it, train a model and activate it: the workflow in minutes."""
    from ml.datasets import get_dataset
    from ml.photos.faces import FaceOptions
    from web.datasets.actions import import_here
    from web.models.actions import activate, set_intended_use
    from web.training.cli import print_version, train_here

    click.echo("FaceDx demo: a demo of the workflow on two well-known people, NOT a clinical model.")
    try:
        dataset = get_dataset(datasets_root(), DEMO_DATASET)
        click.echo(f"1/3 Dataset {DEMO_DATASET} is already here; it is used again "
                   f"(`flask --app app dataset delete {DEMO_DATASET}` to build it anew).")
    except DatasetNotFound:
        with tempfile.TemporaryDirectory(dir=current_app.config["UPLOAD_DIR"]) as staging:
            folder = write_demo_folder(Path(staging) / DEMO_DATASET, per_person)
            click.echo(f"1/3 Importing {2 * per_person} photos (faces found by {current_app.config['FACE_DETECTOR']})")
            with click.progressbar(length=1, label="    importing", file=sys.stderr) as bar:
                dataset = import_here(cli_actor(), folder, DEMO_DATASET,
                                      FaceOptions(current_app.config["FACE_DETECTOR"], "none"), counted_on(bar))
    counts = ", ".join(f"{label} {n}" for label, n in dataset.manifest.counts.items())
    click.echo(f"    {DEMO_DATASET}: {counts}")
    click.echo(f"2/3 Training ({backbone}; progress below)")
    version = train_here(DEMO_DATASET, {"backbone": backbone})
    print_version(version)
    set_intended_use(cli_actor(), version.version, INTENDED_USE)
    usefulness = version.card.usefulness
    if not usefulness["useful"]:         # never forced: the demo shows what the product does with such a model
        raise click.ClickException(f"Version {version.version} is {usefulness['note']}, so it was not activated; "
                                   "see its page (Models) for why.")
    click.echo("3/3 Activating it")
    activate(cli_actor(), version.version)
    tried = Path(current_app.config["DATA_DIR"]) / "demo" / "try-me.jpg"
    tried.parent.mkdir(exist_ok=True)
    tried.write_bytes(try_photo())
    click.echo(f"\nVersion {version.version} is active. Open the app (make run: http://127.0.0.1:8000) and log in:\n"
               f"  as admin: Datasets > {DEMO_DATASET}, Training > the newest job (its folds and scores),\n"
               f"            Models > {version.version} (its evaluation; Try a photo)\n"
               f"  as a doctor (`flask --app app user create NAME --role doctor`): upload {tried}\n"
               "            (a photo not in the dataset) and ask for the map.\n"
               "This model only tells two people apart: it is a demo of the workflow, not a clinical model.")
