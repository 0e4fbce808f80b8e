"""Administrators' pages: datasets, training jobs, model versions and the audit log."""
import json
import tempfile
from pathlib import Path

from flask import (Blueprint, abort, current_app, flash, jsonify, redirect, render_template, request, send_file,
                   url_for)
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import DecimalField, SelectChoice, SelectField, StringField
from wtforms.validators import DataRequired, Regexp, ValidationError

from ml.backbones import unavailable_pipelines
from ml.datasets import NAME_PATTERN, delete_dataset, get_dataset, import_dataset, list_datasets
from ml.errors import FaceDxError, NotUseful, TrainingError
from ml.faces import FaceOptions
from ml.options import OPTION_SPECS, PIPELINES, VGG_BLOCKS
from web import datasets_root, get_registry, import_limits
from web.auth import admin_required
from web.bundles import bundle_download, bundle_upload
from web.db import AuditEvent, TrainingJob, audit, db
from web.errors import status_of
from web.jobs import cancel, get_job, job_state, reconcile, start_training
from web.summaries import version_summary

bp = Blueprint("admin", __name__, url_prefix="/admin")
THUMBNAILS_PER_CLASS = 8


@bp.before_request
@admin_required
def require_admin():
    """Every page here is for administrators only."""


class DatasetForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Regexp(NAME_PATTERN.pattern,
                       message="1-64 letters, digits, '-' or '_', starting with a letter or digit.")])
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
        """Label the pipelines that cannot run here; the reasons are listed under the form."""
        self.unavailable = unavailable_pipelines(PIPELINES, pretrained_dirs)
        self.backbone.choices = [SelectChoice(name, f"{name} (unavailable, see below)" if name in self.unavailable
                                              else name) for name in OPTION_SPECS["backbone"].offered]

    def validate_backbone(self, field):
        reason = self.unavailable.get(field.data)
        # The VGG blocks lack only their pretrained weights; with weights none or a file they run.
        if reason and (field.data not in VGG_BLOCKS or self.weights.data == "pretrained"):
            raise ValidationError(f"{field.data} is unavailable: {reason}.")


# One field per training option, in the order of the specs (after the dataset).
for spec in OPTION_SPECS.values():
    setattr(TrainingForm, spec.name, option_field(spec))


def save_upload(upload):
    """Stream an uploaded archive into a temporary file inside the upload folder; return its path."""
    folder = Path(current_app.config["UPLOAD_DIR"]) / "tmp"
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".zip", delete=False) as target:
        upload.save(target)
    return Path(target.name)


def import_upload(upload, name, fallback, user):
    """Import an uploaded archive as a dataset; the temporary copy is removed whatever happens."""
    path = save_upload(upload)
    try:
        face = FaceOptions(current_app.config["FACE_DETECTOR"], fallback)
        dataset = import_dataset(path, name, datasets_root(), import_limits(), face)
    finally:
        path.unlink(missing_ok=True)
    audit(user, "dataset.import", name)
    db.session.commit()
    return dataset


@bp.route("/datasets", methods=["GET", "POST"])
def datasets():
    """List datasets and import a new one."""
    form = DatasetForm()
    status = 200
    if form.validate_on_submit():
        try:
            dataset = import_upload(form.archive.data, form.name.data, form.face_fallback.data, current_user)
        except FaceDxError as error:
            flash(str(error), "error")
            status = status_of(error)
        else:
            flash(f"Imported {len(dataset.manifest['images'])} photos into {dataset.id}.", "info")
            return redirect(url_for("admin.dataset", name=dataset.id))
    elif request.method == "POST":
        status = 400
    return render_template("admin/datasets.html", form=form, datasets=list_datasets(datasets_root())), status


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


@bp.post("/datasets/<name>/delete")
def dataset_delete(name):
    """Delete a dataset with its photos and cached features."""
    delete_dataset(datasets_root(), name)
    audit(current_user, "dataset.delete", name)
    db.session.commit()
    flash(f"Deleted dataset {name}.", "info")
    return redirect(url_for("admin.datasets"))


def all_jobs():
    reconcile()
    return db.session.execute(db.select(TrainingJob).order_by(TrainingJob.id.desc())).scalars().all()


@bp.route("/training", methods=["GET", "POST"])
def training():
    """Choose a dataset and options, start training; list the jobs."""
    form = TrainingForm()
    form.dataset.choices = [SelectChoice(d.id) for d in list_datasets(datasets_root())]
    form.offer_backbones(current_app.config["PRETRAINED_DIRS"])
    if request.method == "GET" and request.args.get("dataset"):
        form.dataset.data = request.args["dataset"]
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
    return render_template("admin/training.html", form=form, jobs=all_jobs()), status


@bp.get("/training/<int:job_id>")
def job(job_id):
    """Show one job live: phase, epochs, progress bar and curves."""
    found = get_job(job_id)
    return render_template("admin/job.html", job=found, state=job_state(found))


@bp.get("/training/<int:job_id>.json")
def job_json(job_id):
    """The job's state for the live page."""
    response = jsonify(job_state(get_job(job_id)))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/training/<int:job_id>/cancel")
def job_cancel(job_id):
    """Ask a queued or running job to stop."""
    found = get_job(job_id)
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
    return render_template("admin/model.html", version=found, active=registry.pointer().get("version"),
                           card_json=json.dumps(found.card.to_dict(), indent=1), thresholds_form=form,
                           thresholds_changed=thresholds != found.card.abstention)


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
        true, predicted = int(request.args["true"]), int(request.args["predicted"])
    except (KeyError, ValueError):
        abort(400, "Give the cell as ?true=<row>&predicted=<column>.")
    labels = found.card.labels
    if not (0 <= true < len(labels) and 0 <= predicted < len(labels)):
        abort(404, "There is no such cell.")
    rows = [row for row in json.loads((found.path / "evaluation.json").read_text())
            if row["label"] == true and max(range(len(labels)), key=lambda i: row["probabilities"][i]) == predicted]
    try:
        dataset = get_dataset(datasets_root(), found.card.dataset["id"])
        present = dataset.manifest["checksum"] == found.card.dataset.get("checksum")
    except FaceDxError:
        present = False
    return render_template("admin/predictions.html", version=found, rows=rows, true=labels[true],
                           predicted=labels[predicted], dataset_present=present)


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
