"""The validated cases beside a result: thumbnails only of photos whose dataset declared consent, inside the answer.

A version's gallery keeps thumbnails of those photos alone (ml/versions/gallery.py). They travel
inside the result page and the API's answer, which only signed-in staff and token holders get,
never at addresses of their own: an access log would then say which cases were near a patient's
face, and so which conditions.
"""
import base64

from ml.photos.images import encode_png


def thumbnail_base64(case):
    """Return a nearest case's thumbnail as base64 PNG, or None: its dataset did not declare that it may be shown."""
    return None if case.thumbnail is None else base64.b64encode(encode_png(case.thumbnail)).decode()


def with_thumbnails(body, prediction):
    """Add `thumbnail_png_base64` to the nearest cases of a prediction's JSON whose photos may be shown."""
    for case, row in zip(prediction.nearest_cases, body.get("nearest_cases", [])):
        shown = thumbnail_base64(case)
        if shown is not None:
            row["thumbnail_png_base64"] = shown
    return body
