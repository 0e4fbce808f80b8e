"""The validated cases beside a result: thumbnails for signed-in staff, only of photos whose dataset declared consent.

A version's gallery keeps thumbnails of those photos alone (ml/versions/gallery.py); a case
without one answers 404 whoever asks. The doctors' pages ask with their session, the API with a
token (every token belongs to staff).
"""
import functools
import os
from pathlib import Path

from flask import Response, url_for
from flask_login import login_required

from ml.photos.images import encode_png
from ml.versions.gallery import GALLERY_FILE, CaseGallery
from web.api import bp as api
from web.doctor.pages import bp
from web.errors import error_response
from web.services import get_registry

NO_CONSENT = ("No photo of this case may be shown: its dataset did not declare consent (display_consent in "
              "subjects.csv).")


@bp.get("/cases/<version>/<int:case>.png")
@login_required
def case_thumbnail(version, case):
    """Send the thumbnail of a validated case of a version, where its dataset declared consent."""
    return thumbnail_response(version, case)


@api.get("/models/<version>/cases/<int:case>.png")
def api_case_thumbnail(version, case):
    """Send the thumbnail of a validated case of a version to a token's holder, where consent was declared."""
    return thumbnail_response(version, case)


def thumbnail_response(version, case):
    """Answer with a case's thumbnail as PNG, never cached by a browser, or 404 when none may be shown."""
    found = get_registry().get(version)               # an unknown or damaged version: 404 or 409
    path = found.path / GALLERY_FILE if found.card.gallery else None
    image = _gallery(str(path), _stamp(path)).thumbnail(case) if path else None
    if image is None:
        return error_response(404, NO_CONSENT)
    response = Response(encode_png(image), mimetype="image/png")
    response.headers["Cache-Control"] = "private, no-store"
    return response


def with_thumbnail_urls(body, prediction, endpoint="api.api_case_thumbnail"):
    """Add `thumbnail_url` to the nearest cases of a prediction's JSON whose photos may be shown."""
    for case, row in zip(prediction.nearest_cases, body.get("nearest_cases", [])):
        if case.has_thumbnail:
            row["thumbnail_url"] = url_for(endpoint, version=prediction.model_version, case=case.case)
    return body


def _stamp(path):
    info = os.stat(path)
    return info.st_ino, info.st_mtime_ns, info.st_size


@functools.lru_cache(maxsize=4)
def _gallery(path, stamp):
    """Return the gallery of a version's file, read once while the file stays the same."""
    return CaseGallery.load(Path(path).parent)
