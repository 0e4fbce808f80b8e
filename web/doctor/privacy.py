"""Patient photos and face thumbnails: kept only when an operator opts in, and then only for a set number of days."""
import io
import os
import shutil
import uuid
from datetime import date, timedelta
from pathlib import Path

from flask import current_app
from PIL import Image

from ml.photos.images import decode_image, resize

KEPT_DIR = "kept-photos"
THUMBNAIL_SIDE = 64        # px: enough to tell two patients' results apart, too small to be a clinical photo


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


def face_thumbnail(crop):
    """Return the analysed face as a small JPEG to keep with a recorded assessment, or None when keeping is off."""
    if current_app.config["KEEP_THUMBNAILS_DAYS"] <= 0:
        return None
    buffer = io.BytesIO()
    Image.fromarray(resize(crop, THUMBNAIL_SIDE)).save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def purge_thumbnails(now=None):
    """Forget the face thumbnails of assessments older than FACEDX_KEEP_THUMBNAILS_DAYS (all when 0); count them."""
    from web.db import db
    from web.records import Feedback, utcnow

    days = current_app.config["KEEP_THUMBNAILS_DAYS"]
    query = db.update(Feedback).where(Feedback.thumbnail.is_not(None)).values(thumbnail=None)
    if days > 0:
        query = query.where(Feedback.created_at < (now or utcnow()) - timedelta(days=days))
    removed = db.session.execute(query.execution_options(synchronize_session=False)).rowcount
    db.session.commit()
    return removed
