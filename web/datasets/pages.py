"""Administrators' dataset pages: import, look through, curate (remove or move photos) and delete."""
import math

from flask import abort, current_app, flash, redirect, render_template, request, send_file, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import SelectChoice, SelectField, StringField
from wtforms.validators import DataRequired, ValidationError

from ml.datasets import check_name, get_dataset, last_change, list_datasets
from ml.errors import DatasetError, DatasetNotFound, FaceDxError
from ml.photos.faces import with_padding_shown
from ml.photos.images import decode_image, encode_png
from web.admin import bp, live_state
from web.datasets.actions import (
    delete_dataset, forget_change, move_photo, remove_photo, retry_whole_photos, undo_change)
from web.datasets.imports import import_state, start_import
from web.errors import status_of
from web.jobs.records import cancel, get_job, list_jobs
from web.services import datasets_root

THUMBNAILS_PER_CLASS = 8


PHOTOS_PER_PAGE = 48


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


@bp.post("/imports/<int:job_id>/cancel")
def dataset_import_cancel(job_id):
    """Stop an import; nothing of it is kept."""
    cancel(current_user, get_job(job_id, "import"))
    flash(f"Import {job_id} will stop after the photo it is on; nothing of it is kept.", "info")
    return redirect(url_for("admin.dataset_import", job_id=job_id))


@bp.get("/datasets/<name>")
def dataset(name):
    """Show a dataset: counts, sample thumbnails per class, rejected files."""
    found = get_dataset(datasets_root(), name)
    samples = {}
    for index, item in enumerate(found.manifest.images):
        group = samples.setdefault(item["label"], [])
        if len(group) < THUMBNAILS_PER_CLASS:
            group.append(index)
    return render_template("admin/dataset.html", dataset=found, samples=samples)


@bp.get("/datasets/<name>/images/<int:index>")
def dataset_image(name, index):
    """Send one stored face crop of a dataset (administrators only, never from static/)."""
    images = get_dataset(datasets_root(), name).manifest.images
    if not 0 <= index < len(images):
        abort(404)
    crop = decode_image((datasets_root() / name / images[index]["file"]).read_bytes())
    response = current_app.response_class(encode_png(with_padding_shown(crop)), mimetype="image/png")
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.get("/datasets/<name>/rejected/<int:index>")
def rejected_image(name, index):
    """Send the thumbnail of a rejected photo of a dataset (administrators only)."""
    rejected = get_dataset(datasets_root(), name).manifest.rejected
    if not 0 <= index < len(rejected) or "thumbnail" not in rejected[index]:
        abort(404)
    response = send_file(datasets_root() / name / rejected[index]["thumbnail"], mimetype="image/png")
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.post("/datasets/<name>/retry-whole")
def dataset_retry_whole(name):
    """Add the photos rejected for want of a face, each used whole."""
    added = retry_whole_photos(current_user, name)
    flash(f"Added {added} photos of {name}, each used whole.", "info")
    return redirect(url_for("admin.dataset", name=name))


@bp.post("/datasets/<name>/delete")
def dataset_delete(name):
    """Delete a dataset with its photos and cached features."""
    delete_dataset(current_user, name)
    flash(f"Deleted dataset {name}.", "info")
    return redirect(url_for("admin.datasets"))


@bp.get("/datasets/<name>/photos")
def dataset_photos(name):
    """Show every photo of one class of a dataset, a page of thumbnails at a time, each to remove or move."""
    found = get_dataset(datasets_root(), name)
    label, page = request.args.get("class", 0, type=int), request.args.get("page", 1, type=int)
    members = [i for i, item in enumerate(found.manifest.images) if item["label"] == label]
    pages = max(1, math.ceil(len(members) / PHOTOS_PER_PAGE))
    if not 0 <= label < len(found.labels) or not 1 <= page <= pages:
        abort(404, f"Dataset {name} has no such class or page.")
    shown = members[(page - 1) * PHOTOS_PER_PAGE:page * PHOTOS_PER_PAGE]
    return render_template("admin/photos.html", dataset=found, label=label, page=page, pages=pages, photos=shown,
                           count=len(members), change=last_change(datasets_root(), name))


@bp.post("/datasets/<name>/photos/<int:index>/remove")
def dataset_photo_remove(name, index):
    """Remove a photo from a dataset: a new revision of it, audited, that the page offers to undo."""
    done = f"Removed photo {index} from {name}"
    return curate(name, lambda revision_seen: remove_photo(current_user, name, index, revision_seen, done), done)


@bp.post("/datasets/<name>/photos/<int:index>/move")
def dataset_photo_move(name, index):
    """Move a photo of a dataset to another class: a new revision of it, audited, that the page offers to undo."""
    label = request.form.get("label", "")
    before = get_dataset(datasets_root(), name).manifest
    was = before.labels[before.images[index]["label"]] if 0 <= index < len(before.images) else None
    done = f"Moved photo {index} of {name} from {was} to {label}"
    return curate(name, lambda revision_seen: move_photo(current_user, name, index, label, revision_seen, done), done)


@bp.post("/datasets/<name>/undo")
def dataset_undo(name):
    """Undo a dataset's last change, made from its photos page, while nothing changed since."""
    change = last_change(datasets_root(), name) or {}
    note = change.get("note") or "the last change"
    done = f"Undone ({note[0].lower()}{note[1:]}), back to the revision before it"
    return curate(name, lambda revision_seen: undo_change(current_user, name, revision_seen), done)


@bp.post("/datasets/<name>/undo/forget")
def dataset_forget_undo(name):
    """Delete for good the files a dataset's last change took away (e.g. a photo whose consent was withdrawn)."""
    done = "Deleted for good what the last change took away; it can no longer be undone"
    return curate(name, lambda revision_seen: forget_change(current_user, name, revision_seen), done)


def curate(name, change, done):
    """Make a change posted from a dataset's photos page and go back to that page, saying what it did.

    The form names the revision it showed: a change to a dataset that changed since is refused.
    """
    back = url_for("admin.dataset_photos", name=name, **{"class": request.form.get("class", 0, type=int),
                                                          "page": request.form.get("page", 1, type=int)})
    try:
        revised = change(request.form.get("revision", ""))
    except DatasetNotFound:
        raise
    except DatasetError as error:
        flash(str(error), "error")
        return redirect(back)
    checksum = revised.manifest.checksum
    counts = ", ".join(f"{label} {n}" for label, n in revised.manifest.counts.items())
    flash(f"{done}: revision {checksum[:12]} ({counts}). Models trained before keep naming the revision they "
          "were trained on.", "info")
    return redirect(back)
