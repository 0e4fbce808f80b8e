"""The `flask --app app ...` commands: datasets, training, model versions and predictions."""
import json
import sys
from functools import wraps

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from ml.errors import FaceDxError
from web import datasets_root, get_predictor, get_registry, import_limits

dataset_cli = AppGroup("dataset", help="Import and list labelled datasets.")
models_cli = AppGroup("models", help="List, activate and roll back model versions.")


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


@click.command("train")
@with_appcontext
@click.option("--dataset", "dataset_name", required=True, help="Name of an imported dataset.")
@click.option("--weights", default="imagenet", show_default=True, help="imagenet, none, or a weights file.")
@click.option("--image-size", type=int, default=224, show_default=True)
@click.option("--epochs", type=int, default=30, show_default=True, help="Head epochs (early stopping applies).")
@click.option("--fine-tune-epochs", type=int, default=0, show_default=True)
@user_errors
def train_command(dataset_name, weights, image_size, epochs, fine_tune_epochs):
    """Train a model on a dataset; print progress, the new version and its test metrics."""
    from ml.datasets import get_dataset
    from ml.training import TrainingOptions, train

    options = TrainingOptions(weights=weights, image_size=image_size, epochs=epochs,
                              fine_tune_epochs=fine_tune_epochs)
    dataset = get_dataset(datasets_root(), dataset_name)
    version = train(dataset, options, get_registry(), current_app.config["PRETRAINED_DIRS"], print_progress)
    test = version.card["metrics"]["test"]
    click.echo(f"Version {version.version} (not active; `flask --app app models activate {version.version}`)")
    auc = "n/a" if test["macro_roc_auc"] is None else f"{test['macro_roc_auc']:.3f}"
    click.echo(f"Test ({test['n']} photos): accuracy {test['accuracy']:.3f}  macro F1 {test['macro_f1']:.3f}  "
               f"macro ROC-AUC {auc}")
    for label, row in test["per_class"].items():
        click.echo(f"  {label:<24} precision {row['precision']:.2f}  recall {row['recall']:.2f}  "
                   f"F1 {row['f1']:.2f}  n {row['support']}")


def print_progress(event):
    """Print one training progress event as a line on stderr."""
    phase = event["phase"]
    if "epoch" in event:
        numbers = "  ".join(f"{k} {event[k]:.4f}" for k in ("loss", "accuracy", "val_loss", "val_accuracy")
                            if k in event)
        click.echo(f"{phase} epoch {event['epoch']}/{event['epochs']}  {numbers}", err=True)
    elif phase == "features":
        click.echo(f"features {event['done']}/{event['total']}", err=True)
    else:
        click.echo(phase, err=True)


@models_cli.command("list")
def models_list():
    """List model versions, newest first; the active one is marked with *."""
    registry = get_registry()
    active = registry.pointer().get("version")
    for version in registry.versions():
        card = version.card
        accuracy = card["metrics"]["test"]["accuracy"]
        mark = "*" if version.version == active else " "
        click.echo(f"{mark} {version.version}\t{card['dataset']['id']}\t{card['backbone']}"
                   f"/{card['weights']['name']}\t{card['image_size']}px\ttest accuracy {accuracy:.3f}")


@models_cli.command("activate")
@click.argument("version")
@user_errors
def models_activate(version):
    """Make VERSION the model that serves predictions."""
    get_registry().activate(version)
    click.echo(f"Version {version} is active.")


@models_cli.command("rollback")
@user_errors
def models_rollback():
    """Re-activate the version that was active before the current one."""
    click.echo(f"Version {get_registry().rollback()} is active again.")


@click.command("predict")
@with_appcontext
@click.argument("image", type=click.File("rb"))
@user_errors
def predict_command(image):
    """Print the prediction for one photo as JSON."""
    prediction = get_predictor().predict(image.read())
    click.echo(json.dumps(prediction.as_dict(), indent=2))


def init_app(app):
    """Register the commands with the application."""
    for command in (dataset_cli, models_cli, train_command, predict_command):
        app.cli.add_command(command)
