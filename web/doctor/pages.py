"""The doctor's pages: upload a face photo, get every condition with its probability, its basis and its map."""
import time

from flask import Blueprint, current_app, render_template, request
from flask_login import current_user, login_required
from werkzeug.exceptions import RequestEntityTooLarge

from ml.errors import FaceDxError, NoActiveModel
from web.doctor.cases import thumbnail_base64
from web.doctor.feedback import result_token
from web.doctor.privacy import decoded_photo
from web.doctor.serving import analysing
from web.errors import status_of
from web.models.summaries import clinical_percent, model_facts
from web.results import (PredictForm, expected_seconds, map_of_sent_face, refuse, remember_seconds, result_page,
                         shown_name)
from web.services import get_predictor, get_registry

bp = Blueprint("doctor", __name__)
bp.add_app_template_filter(clinical_percent)
bp.add_app_template_filter(thumbnail_base64, "case_thumbnail")


def model_status():
    """Return (the model being served or None, message for the doctor), as health and the API see it."""
    try:
        return get_predictor().current(), None
    except NoActiveModel as error:
        return None, f"{error} Until then photos cannot be analysed."


def predict_page(form, version, status=200, **context):
    """Render the upload form, with the time an analysis takes here."""
    return render_template("doctor/predict.html", form=form, version=version,
                           expected=expected_seconds("analysis"), **context), status


@bp.route("/", methods=["GET", "POST"], endpoint="predict")
@login_required
def predict():
    """Show the upload form; on POST analyse the photo and show the result (its map follows from /explain)."""
    version, unavailable = model_status()
    form = PredictForm()
    if request.method == "GET" or unavailable:
        return predict_page(form, version, 503 if unavailable and request.method == "POST" else 200,
                            unavailable=unavailable)
    if not form.validate_on_submit():
        return predict_page(form, version, 400)
    filename = shown_name(form.photo.data.filename)
    started = time.perf_counter()
    try:
        with analysing(current_user.id):
            photo = decoded_photo(form.photo.data.read())
            prediction = get_predictor().predict_image(photo)
    except FaceDxError as error:
        return predict_page(form, version, status_of(error), error=str(error), filename=filename)
    remember_seconds("analysis", time.perf_counter() - started)
    served = get_registry().get(prediction.model_version)      # an activation may have come in between
    return result_page("doctor/result.html", prediction, served, photo, filename, result=result_token(prediction))


@bp.post("/explain")
@login_required
def explain():
    """Return the heat map of the face shown on a result page, sent back as its PNG (in memory, never logged)."""
    try:
        served = get_predictor().current().version
    except FaceDxError as error:
        return refuse(status_of(error), str(error))
    return map_of_sent_face(get_predictor(), served, "The model changed since this result was shown: analyse the "
                            "photo again.", remember=True)


@bp.get("/model-facts")
@login_required
def facts():
    """Show what the active model is for, what it was trained and evaluated on, and what it was not."""
    version, unavailable = model_status()
    return render_template("doctor/model_facts.html", version=version, unavailable=unavailable,
                           facts=model_facts(get_registry().get(version.version)) if version else None)


@bp.errorhandler(RequestEntityTooLarge)
def photo_too_large(error):
    """Refuse a photo over the limit with the form again (the body was never read)."""
    if not current_user.is_authenticated:       # its limit was a login form's: send it to log in
        return current_app.login_manager.unauthorized()
    version, unavailable = model_status()
    message = f"The photo is too large; the limit is {current_app.config['MAX_IMAGE_BYTES'] // 1024 ** 2} MB."
    return predict_page(PredictForm(formdata=None), version, 413, unavailable=unavailable, error=message)
