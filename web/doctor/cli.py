"""The `predict` command (one photo, JSON out) and the `photos purge` command for kept photos."""
import json

import click
from flask.cli import AppGroup, with_appcontext

from web.cli import user_errors
from web.services import get_predictor

photos_cli = AppGroup("photos", help="Kept patient photos and face thumbnails (only with FACEDX_KEEP_PHOTOS_DAYS or "
                                     "FACEDX_KEEP_THUMBNAILS_DAYS > 0).")


@click.command("predict")
@with_appcontext
@click.argument("image", type=click.File("rb"))
@user_errors
def predict_command(image):
    """Print the prediction for one photo as JSON."""
    prediction = get_predictor().predict(image.read())
    click.echo(json.dumps(prediction.as_dict(), indent=2))


@photos_cli.command("purge")
def photos_purge():
    """Delete kept photos and face thumbnails older than their FACEDX_KEEP_*_DAYS (all of them when keeping is off)."""
    from web.doctor.privacy import purge_photos, purge_thumbnails
    from web.readable import plural

    click.echo(f"Deleted {plural(purge_photos(), 'kept photo')} and {plural(purge_thumbnails(), 'face thumbnail')}.")
