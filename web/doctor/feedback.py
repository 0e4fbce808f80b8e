"""Clinician feedback: the doctor's assessment of a result, stored beside what the model said (never the photo).

Where the site opts in, a recorded assessment also keeps the analysed face as a small thumbnail
(FACEDX_KEEP_THUMBNAILS_DAYS) and the case reference the doctor typed (FACEDX_STORE_CASE_REFERENCE),
so that a doctor can tell their recent results apart.
"""
import base64
import json
import unicodedata
import uuid

from flask import Blueprint, abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from itsdangerous import BadSignature, URLSafeTimedSerializer

from web.db import db
from web.doctor.privacy import face_thumbnail
from web.records import Feedback

bp = Blueprint("feedback", __name__)

REFERRED = "referred"                 # the model's decision when it abstained
ANOTHER = "another condition"
NOT_YET_KNOWN = "not yet known"
RESULT_MAX_AGE_S = 24 * 3600          # a result page left open longer must be analysed again
RECENT = 50
CASE_REFERENCE_MAX = 40


def _signer():
    return URLSafeTimedSerializer(current_app.secret_key, salt="facedx.result")


def result_token(prediction):
    """Return a signed note of what the model said, for the result page's feedback form to send back.

    The server keeps no result, so the form carries it; the signature makes sure the stored
    probabilities and decision are the model's and not the browser's.
    """
    result = {"id": uuid.uuid4().hex, "user": current_user.id, "version": prediction.model_version,
              "probabilities": [[label, round(p, 6)] for label, p in prediction.probabilities],
              "decision": REFERRED if prediction.abstained else prediction.probabilities[0][0]}
    thumbnail = face_thumbnail(prediction.crop)         # None unless the site keeps thumbnails
    if thumbnail:
        result["thumbnail"] = base64.b64encode(thumbnail).decode()
    return _signer().dumps(result)


def assessments(labels):
    """Return what a doctor may record: one of the model's conditions, another one, or not yet known."""
    return [*labels, ANOTHER, NOT_YET_KNOWN]


def read_result(token):
    """Return the result a token notes, or answer 400 when it is not one this server signed for this doctor."""
    try:
        result = _signer().loads(token or "", max_age=RESULT_MAX_AGE_S)
    except BadSignature:
        abort(400, "This result cannot be recorded any more: analyse the photo again.")
    if result["user"] != current_user.id:
        abort(400, "This result was shown to another account.")
    return result


def chosen_assessment(labels):
    """Return the assessment sent in the form, or answer 400 naming the choices."""
    choice = request.form.get("assessment", "")
    if choice not in assessments(labels):
        abort(400, f"Choose the clinical assessment: {', '.join(assessments(labels))}.")
    return choice


def case_reference():
    """Return the case reference sent in the form ("" when none, or when this site stores none); 400 when unusable."""
    if not current_app.config["STORE_CASE_REFERENCE"]:
        return ""
    reference = " ".join(request.form.get("case_reference", "").split())
    if len(reference) > CASE_REFERENCE_MAX:
        abort(400, f"The case reference is too long: at most {CASE_REFERENCE_MAX} characters.")
    if any(unicodedata.category(character).startswith("C") for character in reference):
        abort(400, "The case reference may hold letters, digits, spaces and punctuation only.")
    return reference


def thumbnail_of(result):
    """Return the face thumbnail a result carries, while the site keeps them (None otherwise)."""
    if current_app.config["KEEP_THUMBNAILS_DAYS"] <= 0 or "thumbnail" not in result:
        return None
    return base64.b64decode(result["thumbnail"])


def answer(record, message):
    """Answer a script with JSON, a plain form with the list of recent results."""
    if request.accept_mimetypes.best == "application/json":
        return jsonify(id=record.id, assessment=record.assessment, message=message)
    flash(message, "info")
    return redirect(url_for("feedback.recent"))


@bp.post("/feedback")
@login_required
def record():
    """Record (or change) the doctor's clinical assessment of the result on the page."""
    result = read_result(request.form.get("result"))
    choice = chosen_assessment([label for label, _ in result["probabilities"]])
    reference = case_reference()
    found = db.session.execute(db.select(Feedback).filter_by(result_id=result["id"])).scalar_one_or_none()
    if found is None:
        found = Feedback(result_id=result["id"], user_id=current_user.id, model_version=result["version"],
                         probabilities_json=json.dumps(result["probabilities"]), decision=result["decision"],
                         thumbnail=thumbnail_of(result))
        db.session.add(found)
    found.assessment = choice
    found.case_reference = reference or None
    db.session.commit()
    return answer(found, f"Recorded: {choice}. You can change it under My recent results.")


@bp.get("/results")
@login_required
def recent():
    """List the doctor's own recent assessments (what the model said and what they recorded, no photos)."""
    records = db.session.execute(db.select(Feedback).filter_by(user_id=current_user.id)
                                 .order_by(Feedback.id.desc()).limit(RECENT)).scalars().all()
    keeping = current_app.config["KEEP_THUMBNAILS_DAYS"] > 0
    thumbnails = {r.id: base64.b64encode(r.thumbnail).decode() for r in records if keeping and r.thumbnail}
    return render_template("doctor/results.html", records=records, assessments=assessments, referred=REFERRED,
                           thumbnails=thumbnails)


@bp.post("/results/<int:record_id>")
@login_required
def amend(record_id):
    """Change the assessment of one of the doctor's own records."""
    found = db.session.get(Feedback, record_id)
    if found is None or found.user_id != current_user.id:
        abort(404, "There is no such result of yours.")
    found.assessment = chosen_assessment([label for label, _ in found.probabilities])
    db.session.commit()
    return answer(found, f"Changed to: {found.assessment}.")


def agreement(version):
    """Return the feedback on a version against its decisions: counts per (assessment, decision)."""
    rows = db.session.execute(db.select(Feedback.assessment, Feedback.decision, db.func.count())
                              .filter_by(model_version=version.version)
                              .group_by(Feedback.assessment, Feedback.decision)).all()
    labels = version.card.labels
    rows_named, columns = assessments(labels), [*labels, REFERRED]
    counts = [[0] * len(columns) for _ in rows_named]
    for assessment, decision, count in rows:
        if assessment in rows_named and decision in columns:
            counts[rows_named.index(assessment)][columns.index(decision)] = count
    assessed = sum(sum(counts[i][:len(labels)]) for i in range(len(labels)))
    agreed = sum(counts[i][i] for i in range(len(labels)))
    return {"model_version": version.version, "assessments": rows_named, "decisions": columns, "counts": counts,
            "total": sum(map(sum, counts)), "named_and_known": assessed, "agreed": agreed}
