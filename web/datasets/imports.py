"""Dataset imports from an uploaded archive: what can be refused at once is, the rest runs as a job."""
import uuid
from pathlib import PurePosixPath

from flask import current_app

from ml.datasets import check_archive, check_new_name, get_dataset
from ml.errors import FaceDxError
from ml.photos.faces import FaceOptions
from web.jobs.records import job_state, start_job
from web.services import datasets_root, import_limits
from web.uploads import private_temp_folder

MAX_SOURCE_NAME = 200


def start_import(upload, name, fallback, user):
    """Keep an uploaded archive for its import job and start the job; return it.

    The name, the archive's structure and its limits are checked now (a refusal comes at once);
    the photos are read by the job.
    """
    check_new_name(datasets_root(), name)
    face = FaceOptions(current_app.config["FACE_DETECTOR"], fallback)
    kept = private_temp_folder() / f"import-{uuid.uuid4().hex}.zip"
    try:
        upload.save(kept)
        check_archive(kept, import_limits())
        return start_job("import", name, {"upload": kept.name, "source": source_name(upload.filename),
                                          "face_detector": face.detector, "face_fallback": face.fallback},
                         user.username)
    except BaseException:
        kept.unlink(missing_ok=True)
        raise


def source_name(filename):
    """Return the archive's name as the sender's computer called it (no folders), to show on the dataset's page."""
    name = PurePosixPath((filename or "").replace("\\", "/")).name
    return name[:MAX_SOURCE_NAME] if name and name.isprintable() else "upload.zip"


def import_state(job):
    """Return an import job as JSON: the job, its progress in words and, once done, the dataset it made."""
    body = job_state(job) | {"summary": job.progress.get("step", "")}
    if job.status == "succeeded":
        try:
            dataset = get_dataset(datasets_root(), job.dataset)
        except FaceDxError:          # deleted since
            return body
        body["result"] = dataset_summary(dataset) | {"rejected": dataset.manifest.rejected}
    return body


def dataset_summary(dataset):
    """Return a dataset's name, classes, counts and import date as the API's JSON."""
    manifest = dataset.manifest
    return {"name": dataset.id, "labels": manifest.labels, "counts": manifest.counts,
            "images": len(manifest.images), "rejected_count": len(manifest.rejected),
            "created": manifest.created, "source": manifest.source}
