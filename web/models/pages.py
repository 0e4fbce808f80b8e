"""Administrators' model pages: versions, one version's evaluation, trying, comparing, activating, moving."""
import json

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from ml.datasets import get_dataset, revision
from ml.errors import FaceDxError, NotUseful
from ml.photos.images import decode_image
from web.admin import bp
from web.doctor.feedback import agreement
from web.doctor.serving import analysing
from web.errors import status_of
from web.models.actions import activate, delete_version, rollback, set_intended_use, set_thresholds
from web.models.bundles import bundle_download, bundle_upload
from web.models.forms import IntendedUseForm, ThresholdsForm
from web.models.summaries import intended_use, version_summary
from web.models.trials import version_predictor
from web.results import PredictForm, map_of_sent_face, result_page, shown_name
from web.services import datasets_root, get_registry


@bp.get("/models")
def models(error=None, status=200):
    """List model versions; activate, roll back or import one."""
    registry = get_registry()
    return render_template("admin/models.html", versions=registry.versions(), broken=registry.broken(),
                           pointer=registry.pointer(), error=error), status


@bp.post("/models/import")
def model_import():
    """Import a bundle exported at another site as a new, inactive version."""
    upload = request.files.get("bundle")
    if upload is None or not upload.filename:
        return models("Choose a bundle (.zip) exported by FaceDx first.", 400)
    try:
        version = bundle_upload(upload.stream, upload.filename, current_user)
    except FaceDxError as error:
        return models(f"The bundle was not imported: {error}", status_of(error))
    flash(f"Version {version.version} imported; it is not active until you activate it.", "info")
    return redirect(url_for("admin.model", version=version.version))


@bp.get("/models/<version>/bundle")
def model_bundle(version):
    """Download a version as a bundle to import at another site."""
    return bundle_download(version, current_user)


@bp.get("/models/compare")
def compare():
    """Put chosen versions side by side (`?v=...&v=...`; all versions when none is chosen)."""
    registry = get_registry()
    chosen = request.args.getlist("v")
    versions = [registry.get(v) for v in chosen] if chosen else registry.versions()
    active = registry.pointer().get("version")
    return render_template("admin/compare.html", rows=[version_summary(v, active) for v in versions])


@bp.get("/models/<version>")
def model(version):
    """Show one version: curves, confusion matrix, per-class metrics, card."""
    registry = get_registry()
    found = registry.get(version)
    thresholds = registry.thresholds(version)
    form = ThresholdsForm(formdata=None, min_probability=thresholds["min_probability"],
                          min_margin=thresholds["min_margin"])
    use, use_set_by = intended_use(version)
    return render_template("admin/model.html", version=found, active=registry.pointer().get("version"),
                           dataset_revision=revision_state(found.card.dataset), try_form=PredictForm(formdata=None),
                           card_json=json.dumps(found.card.to_dict(), indent=1), thresholds_form=form,
                           thresholds_changed=thresholds != found.card.abstention,
                           intended_use_form=IntendedUseForm(formdata=None, text=use), intended_use_set_by=use_set_by,
                           agreement=agreement(found))


def revision_state(trained_on):
    """Say whether the dataset revision a model was trained on is the dataset's current one, an earlier one, or gone."""
    try:
        current = get_dataset(datasets_root(), trained_on["id"]).manifest.checksum
        found = revision(datasets_root(), trained_on["id"], trained_on.get("checksum"))
    except FaceDxError:
        return "gone"
    return "gone" if found is None else "current" if current == trained_on.get("checksum") else "earlier"


@bp.post("/models/<version>/delete")
def model_delete(version):
    """Delete a version that is not active, a damaged one too (the page asks for confirmation first)."""
    delete_version(current_user, version)
    flash(f"Deleted model version {version}.", "info")
    return redirect(url_for("admin.models"))


@bp.post("/models/<version>/try")
def model_try(version):
    """Show a version's result for a photo exactly as a doctor would see it, without activating the version.

    The photo stays in memory and is never kept, whatever the setting for doctors' photos.
    """
    found = get_registry().get(version)
    form = PredictForm()
    back = url_for("admin.model", version=version, _anchor="try")
    if not form.validate_on_submit():
        flash(" ".join(errors[-1] for errors in form.errors.values()), "error")
        return redirect(back)
    filename = shown_name(form.photo.data.filename)
    try:
        with analysing(current_user.id):
            photo = decode_image(form.photo.data.read(), current_app.config["MAX_IMAGE_PIXELS"])
            prediction = version_predictor(found).predict_image(photo)
    except FaceDxError as error:
        flash(f"{filename}: {error}", "error")
        return redirect(back)
    return result_page("admin/try.html", prediction, found, photo, filename, result=None,
                       active=get_registry().pointer().get("version"))


@bp.post("/models/<version>/try/explain")
def model_try_explain(version):
    """Return the map of the face on a tried version's result page, as the doctors' result page gets it."""
    found = get_registry().get(version)
    return map_of_sent_face(version_predictor(found), version, f"This page tries version {version}; analyse the "
                            "photo again.")


@bp.post("/models/<version>/intended-use")
def model_intended_use(version):
    """Set what a version is for, as doctors read it in the model facts (stored by version, audited)."""
    get_registry().get(version)
    form = IntendedUseForm()
    if not form.validate_on_submit():
        abort(400, " ".join(errors[-1] for errors in form.errors.values()))
    set_intended_use(current_user, version, form.text.data)
    flash(f"Intended use of {version} saved; doctors read it in the model facts.", "info")
    return redirect(url_for("admin.model", version=version))


@bp.post("/models/<version>/thresholds")
def model_thresholds(version):
    """Set the abstention thresholds of a version."""
    form = ThresholdsForm()
    if not form.validate_on_submit():
        abort(400, " ".join(errors[-1] for errors in form.errors.values()))
    set_thresholds(current_user, version, form.min_probability.data, form.min_margin.data)
    flash(f"Abstention thresholds of {version} saved; they apply to the next prediction.", "info")
    return redirect(url_for("admin.model", version=version))


@bp.get("/models/<version>/predictions")
def model_predictions(version):
    """The held-out images behind one cell of the confusion matrix, with their probabilities."""
    found = get_registry().get(version)
    try:
        true_index, predicted = int(request.args["true"]), int(request.args["predicted"])
    except (KeyError, ValueError):
        abort(400, "Give the cell as ?true=<row>&predicted=<column>.")
    labels = found.card.labels
    if not (0 <= true_index < len(labels) and 0 <= predicted < len(labels)):
        abort(404, "There is no such cell.")
    rows = [row for row in json.loads((found.path / "evaluation.json").read_text()) if row["label"] == true_index
            and max(range(len(labels)), key=lambda i: row["probabilities"][i]) == predicted]
    return render_template("admin/predictions.html", version=found, rows=rows, true_label=labels[true_index],
                           predicted=labels[predicted], photos=photos_now(found.card.dataset))


def photos_now(trained_on):
    """Return {index of a photo in the revision a model was trained on: its index now}, for those still there.

    None when that revision is unknown here (the dataset was deleted, or replaced by another import).
    """
    try:
        trained = revision(datasets_root(), trained_on["id"], trained_on.get("checksum"))
        now = get_dataset(datasets_root(), trained_on["id"]).manifest.images
    except FaceDxError:
        return None
    if trained is None:
        return None
    where = {image["sha256"]: index for index, image in enumerate(now)}
    return {index: where[image["sha256"]] for index, image in enumerate(trained.images) if image["sha256"] in where}


@bp.post("/models/<version>/activate")
def model_activate(version):
    """Make a version the one that serves predictions; one flagged as not useful needs the confirmation box."""
    force = request.form.get("force") == "yes"
    try:
        activate(current_user, version, force)
    except NotUseful as error:
        flash(str(error), "error")
        return redirect(url_for("admin.model", version=version))
    flash(f"Version {version} is active; every worker serves it from its next request.", "info")
    return redirect(url_for("admin.models"))


@bp.post("/models/rollback")
def model_rollback():
    """Re-activate the previously active version."""
    version = rollback(current_user)
    flash(f"Rolled back: version {version} is active again.", "info")
    return redirect(url_for("admin.models"))
