"""Administrators' pages: datasets, training jobs, model versions and the audit log."""
import json
import math

from flask import Blueprint, abort, current_app, flash, jsonify, redirect, render_template, request, send_file, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import DecimalField, SelectChoice, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, ValidationError

from ml.datasets import (
    check_name,
    delete_dataset,
    get_dataset,
    list_datasets,
    move_photo,
    remove_photo,
    retry_whole_photos,
    revision,
)
from ml.errors import DatasetError, DatasetNotFound, FaceDxError, NotUseful, TrainingError
from ml.features.availability import unavailable_pipelines
from ml.learning.options import OPTION_SPECS, PIPELINES, VGG_BLOCKS
from ml.photos.images import decode_image
from web import datasets_root, get_registry, import_limits
from web.auth import admin_required
from web.bundles import bundle_download, bundle_upload
from web.db import AuditEvent, IntendedUse, audit, db
from web.doctor import PredictForm, map_of_sent_face, result_page, shown_name
from web.errors import status_of
from web.feedback import agreement
from web.imports import import_state, start_import
from web.jobs import cancel, get_job, job_state, list_jobs, start_training
from web.serving import analysing
from web.summaries import intended_use, version_summary
from web.trials import version_predictor
from web.versions import delete_version

bp = Blueprint("admin", __name__, url_prefix="/admin")
THUMBNAILS_PER_CLASS = 8
PHOTOS_PER_PAGE = 48
BASELINE_NAMES = {"majority": "majority class", "hog-svm": "HOG + linear SVM"}


@bp.before_request
@admin_required
def require_admin():
    """Every page here is for administrators only."""


@bp.before_app_request
def first_run():
    """Send an administrator opening the start page of a fresh install (no model ever activated) to the first steps."""
    if request.endpoint == "doctor.predict" and request.method == "GET" and current_user.is_authenticated \
            and current_user.is_admin and not get_registry().pointer():
        return redirect(url_for("admin.home"))
    return None


@bp.get("/")
def home():
    """Show the way in: import, train, activate, each step ticked once done, with the latest of each."""
    registry = get_registry()
    datasets, versions, active = list_datasets(datasets_root()), registry.versions(), registry.pointer().get("version")
    steps = {"import": bool(datasets), "train": bool(versions), "activate": bool(active)}
    return render_template("admin/home.html", steps=steps, datasets=datasets, versions=versions, active=active,
                           jobs=list_jobs("training", limit=3))


def dataset_name(form, field):
    """Refuse a name that the import would refuse, with its message (the whole name must match)."""
    try:
        check_name(field.data)
    except DatasetError as error:
        raise ValidationError(str(error)) from None


class DatasetForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), dataset_name])
    archive = FileField("Zip archive", validators=[FileRequired("Choose a zip archive.")])
    face_fallback = SelectField("When no face is found", choices=[
        SelectChoice("none", "reject the photo"),
        SelectChoice("whole", "use the whole photo (photos already cropped to the face)")])


def checked_by(spec):
    """Return a form validator that refuses what the option's spec refuses, with the same message."""
    def check(form, field):
        try:
            spec.parse(field.data)
        except TrainingError as error:
            raise ValidationError(str(error)) from None
    return check


def option_field(spec):
    """Return the form field of a training option: a select where its spec offers values, else a text box."""
    label = spec.name.replace("_", " ").capitalize()
    common = {"default": "auto" if spec.auto else spec.default, "description": spec.describe(),
              "validators": [checked_by(spec)]}
    if spec.choices or spec.offered:
        return SelectField(label, choices=[SelectChoice(value) for value in spec.choices or spec.offered],
                           validate_choice=False, **common)
    if spec.kind is str or spec.auto:
        return StringField(label, **common)
    return StringField(label, render_kw={"type": "number", "min": spec.low, "max": spec.high,
                                         "step": 1 if spec.kind is int else "any"}, **common)


# The options the training form shows; the others fold into "Advanced options".
BASIC_OPTIONS = ("backbone", "head", "folds", "weights", "image_size", "epochs", "fine_tune_epochs")


class TrainingForm(FlaskForm):
    dataset = SelectField("Dataset", validators=[DataRequired()])

    def option_fields(self, basic):
        """Return the fields of the basic options, or of the advanced ones, in the order of their specs."""
        return [self[name] for name in OPTION_SPECS if (name in BASIC_OPTIONS) == basic]

    def offer_backbones(self, pretrained_dirs):
        """Label the pipelines that cannot run here; the reasons are listed under the form, without server paths."""
        unavailable = unavailable_pipelines(PIPELINES, pretrained_dirs)
        self.unavailable = {name: reason.replace(str(pretrained_dirs[0]), "models/pretrained/ in the data folder")
                            for name, reason in unavailable.items()} if pretrained_dirs else unavailable
        self.backbone.choices = [SelectChoice(name, f"{name} (unavailable, see below)" if name in self.unavailable
                                              else name) for name in OPTION_SPECS["backbone"].offered]

    def applies_to(self, name):
        """Return {"backbones": ..., "heads": ...}, the choices for which an option matters (absent: all of them).

        `auto` compares the VGG16 blocks only where they can run, so their options matter to it only there.
        """
        rules, where = OPTION_SPECS[name].applies_to, {}
        if "backbone" in rules:
            runs_vgg = any(block not in self.unavailable for block in VGG_BLOCKS)
            where["backbones"] = [b for b in rules["backbone"] if b != "auto" or runs_vgg]
        if "head" in rules:
            where["heads"] = list(rules["head"])
        return where

    def shown(self, field):
        """Say whether to show an option's field: it matters to the chosen backbone and head, or it is wrong."""
        if field.name not in OPTION_SPECS or field.errors:
            return True
        where = self.applies_to(field.name)
        return self.backbone.data in where.get("backbones", [self.backbone.data]) and \
            self.head.data in where.get("heads", [self.head.data])

    def validate_backbone(self, field):
        reason = self.unavailable.get(field.data)
        # The VGG blocks lack only their pretrained weights; with weights none or a file they run.
        if reason and (field.data not in VGG_BLOCKS or self.weights.data == "pretrained"):
            raise ValidationError(f"{field.data} is unavailable: {reason}.")


# One field per training option, in the order of the specs (after the dataset).
for spec in OPTION_SPECS.values():
    setattr(TrainingForm, spec.name, option_field(spec))


@bp.route("/datasets", methods=["GET", "POST"])
def datasets():
    """List datasets and start importing a new one (the page of its import follows)."""
    form = DatasetForm()
    status = 200
    if form.validate_on_submit():
        try:
            job = start_import(form.archive.data, form.name.data, form.face_fallback.data, current_user)
        except FaceDxError as error:
            flash(str(error), "error")
            status = status_of(error)
        else:
            return redirect(url_for("admin.dataset_import", job_id=job.id))
    elif request.method == "POST":
        status = 400
    return render_template("admin/datasets.html", form=form, datasets=list_datasets(datasets_root()),
                           imports=list_jobs("import", limit=10)), status


@bp.get("/imports/<int:job_id>")
def dataset_import(job_id):
    """Show an import as it runs (photo n of N, rate, time left); once it succeeded, go to its dataset."""
    found = get_job(job_id, "import")
    state = import_state(found)
    if found.status == "succeeded" and "result" in state:
        flash(f"Imported {state['result']['images']:,} photos into {found.dataset} from "
              f"{found.options['source']}.", "info")
        return redirect(url_for("admin.dataset", name=found.dataset))
    return render_template("admin/import.html", job=found, state=state)


@bp.get("/imports/<int:job_id>.json")
def dataset_import_json(job_id):
    """An import's state for its live page."""
    return live_state(import_state(get_job(job_id, "import")))


def live_state(state):
    """Answer a live page's poll with a job's state as JSON, never cached."""
    response = jsonify(state)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/imports/<int:job_id>/cancel")
def dataset_import_cancel(job_id):
    """Stop an import; nothing of it is kept."""
    cancel(get_job(job_id, "import"))
    audit(current_user, "dataset.import_cancel", f"import {job_id}")
    db.session.commit()
    flash(f"Import {job_id} will stop after the photo it is on; nothing of it is kept.", "info")
    return redirect(url_for("admin.dataset_import", job_id=job_id))


@bp.get("/datasets/<name>")
def dataset(name):
    """Show a dataset: counts, sample thumbnails per class, rejected files."""
    found = get_dataset(datasets_root(), name)
    samples = {}
    for index, item in enumerate(found.manifest["images"]):
        group = samples.setdefault(item["label"], [])
        if len(group) < THUMBNAILS_PER_CLASS:
            group.append(index)
    return render_template("admin/dataset.html", dataset=found, samples=samples)


@bp.get("/datasets/<name>/images/<int:index>")
def dataset_image(name, index):
    """Send one stored face crop of a dataset (administrators only, never from static/)."""
    images = get_dataset(datasets_root(), name).manifest["images"]
    if not 0 <= index < len(images):
        abort(404)
    response = send_file(datasets_root() / name / images[index]["file"], mimetype="image/png")
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.get("/datasets/<name>/rejected/<int:index>")
def rejected_image(name, index):
    """Send the thumbnail of a rejected photo of a dataset (administrators only)."""
    rejected = get_dataset(datasets_root(), name).manifest["rejected"]
    if not 0 <= index < len(rejected) or "thumbnail" not in rejected[index]:
        abort(404)
    response = send_file(datasets_root() / name / rejected[index]["thumbnail"], mimetype="image/png")
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.post("/datasets/<name>/retry-whole")
def dataset_retry_whole(name):
    """Add the photos rejected for want of a face, each used whole."""
    added = retry_whole_photos(datasets_root(), name)
    audit(current_user, "dataset.retry_whole", f"{name} ({added} photos)")
    db.session.commit()
    flash(f"Added {added} photos of {name}, each used whole.", "info")
    return redirect(url_for("admin.dataset", name=name))


@bp.post("/datasets/<name>/delete")
def dataset_delete(name):
    """Delete a dataset with its photos and cached features."""
    delete_dataset(datasets_root(), name)
    audit(current_user, "dataset.delete", name)
    db.session.commit()
    flash(f"Deleted dataset {name}.", "info")
    return redirect(url_for("admin.datasets"))


@bp.get("/datasets/<name>/photos")
def dataset_photos(name):
    """Show every photo of one class of a dataset, a page of thumbnails at a time, each to remove or move."""
    found = get_dataset(datasets_root(), name)
    label, page = request.args.get("class", 0, type=int), request.args.get("page", 1, type=int)
    members = [i for i, item in enumerate(found.manifest["images"]) if item["label"] == label]
    pages = max(1, math.ceil(len(members) / PHOTOS_PER_PAGE))
    if not 0 <= label < len(found.labels) or not 1 <= page <= pages:
        abort(404, f"Dataset {name} has no such class or page.")
    shown = members[(page - 1) * PHOTOS_PER_PAGE:page * PHOTOS_PER_PAGE]
    return render_template("admin/photos.html", dataset=found, label=label, page=page, pages=pages, photos=shown,
                           count=len(members))


@bp.post("/datasets/<name>/photos/<int:index>/remove")
def dataset_photo_remove(name, index):
    """Remove a photo from a dataset: a new revision of it, audited."""
    def remove(root, revision_seen, min_per_class):
        return remove_photo(root, name, index, revision_seen, min_per_class), f"Removed photo {index} from {name}"
    return curate(name, index, "dataset.photo_remove", remove)


@bp.post("/datasets/<name>/photos/<int:index>/move")
def dataset_photo_move(name, index):
    """Move a photo of a dataset to another class: a new revision of it, audited."""
    label = request.form.get("label", "")

    def move(root, revision_seen, min_per_class):
        before = get_dataset(root, name).manifest
        was = before["labels"][before["images"][index]["label"]] if 0 <= index < len(before["images"]) else None
        return (move_photo(root, name, index, label, revision_seen, min_per_class),
                f"Moved photo {index} of {name} from {was} to {label}")
    return curate(name, index, "dataset.photo_move", move)


def curate(name, index, action, change):
    """Make a change posted from a dataset's photos page, audit it and go back to that page, saying what it did.

    The form names the revision it showed: a change to a dataset that changed since is refused.
    """
    back = url_for("admin.dataset_photos", name=name, **{"class": request.form.get("class", 0, type=int),
                                                          "page": request.form.get("page", 1, type=int)})
    try:
        revised, done = change(datasets_root(), request.form.get("revision", ""), import_limits().min_per_class)
    except DatasetNotFound:
        raise
    except DatasetError as error:
        flash(str(error), "error")
        return redirect(back)
    checksum = revised.manifest["checksum"]
    audit(current_user, action, f"{name}: photo {index} -> revision {checksum[:12]}")
    db.session.commit()
    counts = ", ".join(f"{label} {n}" for label, n in revised.manifest["counts"].items())
    flash(f"{done}: revision {checksum[:12]} ({counts}). Models trained before keep naming the revision they "
          "were trained on.", "info")
    return redirect(back)


@bp.route("/training", methods=["GET", "POST"])
def training():
    """Choose a dataset and options, start training; list the jobs."""
    form = TrainingForm()
    datasets = list_datasets(datasets_root())
    form.dataset.choices = [SelectChoice(d.id) for d in datasets]
    form.offer_backbones(current_app.config["PRETRAINED_DIRS"])
    if request.method == "GET" and datasets:
        newest = max(datasets, key=lambda d: d.manifest["created"])
        form.dataset.data = request.args.get("dataset") or newest.id
    status = 200
    if form.validate_on_submit():
        options = {name: form[name].data for name in OPTION_SPECS}
        try:
            job = start_training(form.dataset.data, options, current_user.username)
        except FaceDxError as error:
            flash(str(error), "error")
            status = status_of(error)
        else:
            audit(current_user, "training.start", f"job {job.id} on {job.dataset}")
            db.session.commit()
            return redirect(url_for("admin.job", job_id=job.id))
    elif request.method == "POST":
        status = 400
    return render_template("admin/training.html", form=form, jobs=list_jobs("training")), status


@bp.get("/training/<int:job_id>")
def job(job_id):
    """Show one job live (step, folds scored, candidates, curves); once it succeeded, its score and what next."""
    found = get_job(job_id, "training")
    outcome = job_outcome(found)
    state = job_state(found)
    if outcome:
        state["result"] = outcome["scores"]
    chosen = found.options
    options = {name: value for name, value in chosen.items() if name not in OPTION_SPECS
               or OPTION_SPECS[name].applies(chosen.get("backbone"), chosen.get("head"))}
    return render_template("admin/job.html", job=found, state=state, outcome=outcome, options=options,
                           baseline_names=BASELINE_NAMES)


def job_outcome(found):
    """Return what a succeeded job made: its version, summary, the active version and its scores per fold, or None."""
    registry = get_registry()
    try:
        version = registry.get(found.model_version) if found.model_version else None
    except FaceDxError:             # deleted or damaged since: the job page still shows the job
        return None
    if version is None:
        return None
    active = registry.pointer().get("version")
    metrics = version.card.metrics
    scores = {"fold_accuracies": metrics.get("fold_accuracies") if metrics.get("method") == "cross-validation"
              else None, "baselines": {name: b["accuracy"] for name, b in metrics.get("baselines", {}).items()}}
    return {"version": version, "summary": version_summary(version, active), "active": active, "scores": scores}


@bp.get("/training/<int:job_id>.json")
def job_json(job_id):
    """The job's state for the live page."""
    return live_state(job_state(get_job(job_id, "training")))


@bp.post("/training/<int:job_id>/cancel")
def job_cancel(job_id):
    """Ask a queued or running job to stop."""
    found = get_job(job_id, "training")
    cancel(found)
    audit(current_user, "training.cancel", f"job {job_id}")
    db.session.commit()
    flash(f"Job {job_id} will stop at the next step.", "info")
    return redirect(url_for("admin.job", job_id=job_id))


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
        current = get_dataset(datasets_root(), trained_on["id"]).manifest["checksum"]
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


class IntendedUseForm(FlaskForm):
    text = TextAreaField("Intended use", validators=[DataRequired("Say what the model is for."),
                                                     Length(max=2000, message="Keep it under 2,000 characters.")])


@bp.post("/models/<version>/intended-use")
def model_intended_use(version):
    """Set what a version is for, as doctors read it in the model facts (stored by version, audited)."""
    get_registry().get(version)
    form = IntendedUseForm()
    if not form.validate_on_submit():
        abort(400, " ".join(errors[-1] for errors in form.errors.values()))
    row = db.session.get(IntendedUse, version) or IntendedUse(model_version=version)
    row.text, row.updated_by = form.text.data.strip(), current_user.username
    db.session.add(row)
    audit(current_user, "model.intended_use", version)
    db.session.commit()
    flash(f"Intended use of {version} saved; doctors read it in the model facts.", "info")
    return redirect(url_for("admin.model", version=version))


def probability(form, field):
    """Refuse a threshold that is not a number from 0 to 1 (NaN and infinities included)."""
    if field.data is None or not field.data.is_finite() or not 0 <= field.data <= 1:
        raise ValidationError(f"{field.label.text} must be a number from 0 to 1.")


class ThresholdsForm(FlaskForm):
    min_probability = DecimalField("Lowest top probability", places=2, validators=[probability])
    min_margin = DecimalField("Smallest margin to the second condition", places=2, validators=[probability])


@bp.post("/models/<version>/thresholds")
def model_thresholds(version):
    """Set the abstention thresholds of a version."""
    form = ThresholdsForm()
    if not form.validate_on_submit():
        abort(400, " ".join(errors[-1] for errors in form.errors.values()))
    registry = get_registry()
    registry.set_thresholds(version, float(form.min_probability.data), float(form.min_margin.data))
    audit(current_user, "model.thresholds", f"{version} {form.min_probability.data}/{form.min_margin.data}")
    db.session.commit()
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
        now = get_dataset(datasets_root(), trained_on["id"]).manifest["images"]
    except FaceDxError:
        return None
    if trained is None:
        return None
    where = {image["sha256"]: index for index, image in enumerate(now)}
    return {index: where[image["sha256"]] for index, image in enumerate(trained["images"]) if image["sha256"] in where}


@bp.post("/models/<version>/activate")
def model_activate(version):
    """Make a version the one that serves predictions; one flagged as not useful needs the confirmation box."""
    force = request.form.get("force") == "yes"
    try:
        get_registry().activate(version, force)
    except NotUseful as error:
        flash(str(error), "error")
        return redirect(url_for("admin.model", version=version))
    audit(current_user, "model.activate", f"{version} (forced: flagged as not useful)" if force else version)
    db.session.commit()
    flash(f"Version {version} is active; every worker serves it from its next request.", "info")
    return redirect(url_for("admin.models"))


@bp.post("/models/rollback")
def model_rollback():
    """Re-activate the previously active version."""
    version = get_registry().rollback()
    audit(current_user, "model.rollback", version)
    db.session.commit()
    flash(f"Rolled back: version {version} is active again.", "info")
    return redirect(url_for("admin.models"))


@bp.get("/audit")
def audit_log():
    """Show the latest administrative actions."""
    events = db.session.execute(db.select(AuditEvent).order_by(AuditEvent.id.desc()).limit(500)).scalars().all()
    return render_template("admin/audit.html", events=events)
