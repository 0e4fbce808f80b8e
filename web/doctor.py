"""The doctor's page: upload a face photo, get every condition with its probability."""
import base64
from datetime import datetime, timezone

from flask import Blueprint, current_app, render_template, request
from flask_login import login_required
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from werkzeug.exceptions import RequestEntityTooLarge

from ml.errors import FaceDxError, NoActiveModel
from ml.images import encode_png
from web import get_predictor, get_registry
from web.errors import status_of
from web.privacy import keep_photo

bp = Blueprint("doctor", __name__)


class PredictForm(FlaskForm):
    photo = FileField("Face photo", validators=[FileRequired("Choose a photo first.")])


def model_status():
    """Return (the model being served or None, message for the doctor), as health and the API see it."""
    try:
        return get_predictor().current(), None
    except NoActiveModel as error:
        return None, f"{error} Until then photos cannot be analysed."


@bp.route("/", methods=["GET", "POST"], endpoint="predict")
@login_required
def predict():
    """Show the upload form; on POST analyse the photo and show the result."""
    version, unavailable = model_status()
    form = PredictForm()
    if request.method == "GET" or unavailable:
        return render_template("doctor/predict.html", form=form, version=version, unavailable=unavailable), \
            503 if unavailable and request.method == "POST" else 200
    if not form.validate_on_submit():
        return render_template("doctor/predict.html", form=form, version=version), 400
    try:
        photo = form.photo.data.read()
        keep_photo(photo)
        prediction = get_predictor().predict(photo, explain=True)
    except FaceDxError as error:
        return render_template("doctor/predict.html", form=form, version=version, error=str(error)), \
            status_of(error)
    # The version read at the start of the request, unless an activation came in between.
    served = version if version.version == prediction.model_version else get_registry().get(prediction.model_version)
    response = current_app.make_response(render_template(
        "doctor/result.html", form=PredictForm(formdata=None), prediction=prediction, version=served,
        crop=base64.b64encode(encode_png(prediction.crop)).decode(),
        heatmap=base64.b64encode(prediction.explanation["heatmap"]).decode(),
        analysed_at=datetime.now(timezone.utc)))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(RequestEntityTooLarge)
def photo_too_large(error):
    """Refuse a photo over the limit with the form again (the body was never read)."""
    version, unavailable = model_status()
    message = f"The photo is too large; the limit is {current_app.config['MAX_IMAGE_BYTES'] // 1024 ** 2} MB."
    return render_template("doctor/predict.html", form=PredictForm(formdata=None), version=version,
                           unavailable=unavailable, error=message), 413
