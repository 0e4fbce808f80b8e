"""The API's prediction endpoint, for doctors' tokens."""
import dataclasses

from flask import g, jsonify, request

from web.api import bp
from web.doctor.cases import with_thumbnails
from web.doctor.privacy import decoded_photo
from web.doctor.serving import analysing, explained
from web.errors import error_response
from web.services import get_predictor


@bp.post("/predict")
def predict():
    """Predict from the multipart field `image` (`explain=true` adds a heat map); processed in memory only."""
    upload = request.files.get("image")
    if upload is None:
        return error_response(400, "Send the photo as the multipart form field 'image'.")
    explain = (request.args.get("explain") or request.form.get("explain") or "").lower()
    if explain not in ("", "true", "false", "1", "0"):
        return error_response(400, "explain must be true or false.")
    predictor = get_predictor()
    with analysing(g.api_user.id):
        prediction = predictor.predict_image(decoded_photo(upload.read()))
    if explain in ("true", "1"):         # the map in the maps' own pool, of the class the model names
        prediction = dataclasses.replace(prediction, explanation=explained(
            g.api_user.id, lambda: predictor.explain_crop(prediction.crop)))
    response = jsonify(with_thumbnails(prediction.as_dict(), prediction))
    response.headers["Cache-Control"] = "no-store"
    return response
