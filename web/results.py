"""The result page that doctors and an administrator's trial share: the form, the page, the map of its face."""
import base64
import io
import math
import statistics
from collections import deque
from datetime import datetime, timezone

from flask import current_app, jsonify, render_template, request
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from PIL import Image, ImageDraw

from ml.errors import FaceDxError
from ml.photos.faces import CROP_SIZE
from ml.photos.images import decode_image, encode_png
from ml.serving.explain import COLOUR_SCALE, SHOWN_FROM
from web.doctor.feedback import CASE_REFERENCE_MAX, assessments
from web.doctor.serving import explained
from web.errors import error_code, status_of
from web.models.summaries import model_facts

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


BOXED_PHOTO_SIDE = 480        # the photo with the analysed face boxed, shown when it holds several faces


TIMINGS_KEPT = 20


class PredictForm(FlaskForm):
    photo = FileField("Face photo", validators=[FileRequired("Choose a photo first.")])


def remember_seconds(kind, seconds):
    """Keep how long an analysis or a map took on this server, to tell the next doctor how long to wait."""
    timings = current_app.extensions.setdefault("facedx.doctor_timings", {})
    timings.setdefault(kind, deque(maxlen=TIMINGS_KEPT)).append(seconds)


def expected_seconds(kind):
    """Return the median whole seconds of the last analyses or maps here, or None before the first."""
    recent = list(current_app.extensions.get("facedx.doctor_timings", {}).get(kind, ()))
    return max(1, math.ceil(statistics.median(recent))) if recent else None


def shown_name(filename):
    """Return the chosen file's name as the doctor knows it, for the page only (never stored or logged)."""
    return (filename or "")[:120]


def result_page(template, prediction, version, photo, filename, **context):
    """Answer with a result page (a doctor's, or an administrator's trial of a version), never cached."""
    response = current_app.make_response(render_template(
        template, form=PredictForm(formdata=None), prediction=prediction, version=version,
        facts=model_facts(version), filename=filename, crop=base64.b64encode(encode_png(prediction.crop)).decode(),
        boxed_photo=boxed_photo(photo, prediction.face) if prediction.faces_found > 1 else None,
        assessments=assessments(version.card.labels), expected=expected_seconds("analysis"),
        expected_map=expected_seconds(f"map of {version.version}"), scale=colour_scale(),
        analysed_at=datetime.now(timezone.utc), case_reference_max=CASE_REFERENCE_MAX, **context))
    response.headers["Cache-Control"] = "no-store"
    return response


def colour_scale():
    """Return the map's colour scale as the page draws it: the share left uncoloured, then (offset, colour) stops."""
    stops = [((value - SHOWN_FROM) / (1 - SHOWN_FROM), "rgb({}, {}, {})".format(*colour))
             for value, colour in COLOUR_SCALE]
    return {"uncoloured": SHOWN_FROM, "stops": stops}


def boxed_photo(rgb, box):
    """Return a small copy of the photo with the analysed face boxed, as base64 JPEG (in memory only)."""
    image = Image.fromarray(rgb)
    scale = min(1.0, BOXED_PHOTO_SIDE / max(image.size))
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    corners = [round(v * scale) for v in (box.x, box.y, box.x + box.width, box.y + box.height)]
    ImageDraw.Draw(image).rectangle(corners, outline=(255, 214, 0), width=max(2, image.width // 120))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return base64.b64encode(buffer.getvalue()).decode()


def refuse(status, message):
    """Answer the result page's script with {error, message}."""
    return jsonify(error=error_code(status), message=message), status


def map_of_sent_face(predictor, version, changed, remember=False):
    """Answer a result page's request for its map: check the face it sent back, then explain it with `predictor`.

    `version` is the one the page must have been made with (else 409 with `changed`); with
    `remember`, the map's time is kept to tell the next doctor how long to wait.
    """
    upload = request.files.get("crop")
    data = upload.read() if upload else b""
    if not data.startswith(PNG_SIGNATURE):
        return refuse(400, f"Send the analysed face as a {CROP_SIZE} x {CROP_SIZE} PNG in the field 'crop'.")
    if request.form.get("model_version") != version:
        return refuse(409, changed)
    try:
        crop = decode_image(data, max_pixels=CROP_SIZE * CROP_SIZE)
        if crop.shape != (CROP_SIZE, CROP_SIZE, 3):
            return refuse(400, f"The face must be {CROP_SIZE} x {CROP_SIZE} pixels, as the result page sends it.")
        explanation = explained(current_user.id, lambda: predictor.explain_crop(crop))
    except FaceDxError as error:
        return refuse(status_of(error), str(error))
    if remember:
        remember_seconds(f"map of {version}", explanation.seconds)    # maps cost 0.05 s to 2 s by model
    response = jsonify(method=explanation.method,
                       overlay_png_base64=explanation.overlay_png_base64,
                       coloured=bool(explanation.heatmap.max() >= SHOWN_FROM), seconds=round(explanation.seconds, 2))
    response.headers["Cache-Control"] = "no-store"
    return response
