"""Actions on datasets, one function each: it checks, does the work, audits and commits.

The pages, the API and the command line call these; an import started from a page or the API is
audited by its job when it has imported (web/jobs/run.py).
"""
from ml import datasets
from web.db import audit, db
from web.services import datasets_root, import_limits


def import_here(actor, source, name, face, progress=None):
    """Import an archive or folder in this process (the command line), audited; return the Dataset."""
    dataset = datasets.import_dataset(source, name, datasets_root(), import_limits(), face, progress)
    audit(actor, "dataset.import", name)
    db.session.commit()
    return dataset


def delete_dataset(actor, name):
    """Delete a dataset with its photos and cached features."""
    datasets.delete_dataset(datasets_root(), name)
    audit(actor, "dataset.delete", name)
    db.session.commit()


def retry_whole_photos(actor, name):
    """Add the photos of a dataset rejected for want of a face, each used whole; return how many."""
    added = datasets.retry_whole_photos(datasets_root(), name, import_limits().min_per_class)
    audit(actor, "dataset.retry_whole", f"{name} ({added} photos)")
    db.session.commit()
    return added


def remove_photo(actor, name, index, revision_seen, note=None):
    """Remove a photo from a dataset: a new revision of it (refused if the dataset changed since `revision_seen`).

    `note` says what was done, for the page that offers to undo it.
    """
    revised = datasets.remove_photo(datasets_root(), name, index, revision_seen, import_limits().min_per_class, note)
    _audit_revision(actor, "dataset.photo_remove", name, index, revised)
    return revised


def move_photo(actor, name, index, label, revision_seen, note=None):
    """Move a photo of a dataset to another class: a new revision of it (refused as remove_photo is)."""
    revised = datasets.move_photo(datasets_root(), name, index, label, revision_seen, import_limits().min_per_class,
                                  note)
    _audit_revision(actor, "dataset.photo_move", name, index, revised)
    return revised


def undo_change(actor, name, revision_seen):
    """Undo a dataset's last change (refused if anything changed since `revision_seen`); return the dataset."""
    restored = datasets.undo_change(datasets_root(), name, revision_seen)
    audit(actor, "dataset.undo", f"{name}: revision {revision_seen[:12]} -> {restored.manifest.checksum[:12]}")
    db.session.commit()
    return restored


def forget_change(actor, name, revision_seen):
    """Delete for good what a dataset's last change took away, so that it cannot be undone; return the dataset."""
    kept = datasets.forget_change(datasets_root(), name, revision_seen)
    audit(actor, "dataset.forget_undo", f"{name}: revision {revision_seen[:12]}")
    db.session.commit()
    return kept


def _audit_revision(actor, action, name, index, revised):
    audit(actor, action, f"{name}: photo {index} -> revision {revised.manifest.checksum[:12]}")
    db.session.commit()
