"""Patient photos: kept only when an operator opts in, and then only for a set number of days."""
import os
import shutil
import uuid
from datetime import date, timedelta
from pathlib import Path

from flask import current_app

from ml.photos.images import decode_image

KEPT_DIR = "kept-photos"


def kept_root():
    return Path(current_app.config["INSTANCE_DIR"]) / KEPT_DIR


def decoded_photo(data):
    """Decode an uploaded photo (ImageError when it is none) and keep it if the operator opted in; return RGB."""
    rgb = decode_image(data, current_app.config["MAX_IMAGE_PIXELS"])
    keep_photo(data)          # only now: what is not an image is never kept
    return rgb


def keep_photo(data):
    """Store an uploaded photo when FACEDX_KEEP_PHOTOS_DAYS > 0 (default 0: nothing is written)."""
    if current_app.config["KEEP_PHOTOS_DAYS"] <= 0:
        return None
    folder = kept_root() / date.today().isoformat()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{uuid.uuid4().hex}.img"          # never the upload's own name
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as stream:
        stream.write(data)
    return path


def purge_photos(today=None):
    """Delete kept photos older than the retention period (all of them when keeping is off); return the count."""
    root = kept_root()
    if not root.is_dir():
        return 0
    days = current_app.config["KEEP_PHOTOS_DAYS"]
    oldest = (today or date.today()) - timedelta(days=max(days, 0))
    removed = 0
    for folder in root.iterdir():
        try:
            day = date.fromisoformat(folder.name)
        except ValueError:
            continue
        if days <= 0 or day < oldest:
            removed += sum(1 for _ in folder.iterdir())
            shutil.rmtree(folder)
    return removed
