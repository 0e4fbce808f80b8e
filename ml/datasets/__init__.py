"""Labelled face photos imported into dataset folders, and the changes made to them afterwards.

- store: dataset names, folders and manifests (ImportLimits, Dataset, list_datasets, get_dataset,
  delete_dataset, check_name), the checks every revision passes, and writing a manifest atomically;
- archive: reading an uploaded zip or folder safely (check_archive), and which files can give a class;
- subjects: subjects.csv, and the person, sex, age and ancestry of each photo;
- importing: import_dataset: decoding, face-cropping and storing each photo, with the rejected ones;
- curation: remove_photo, move_photo, retry_whole_photos, each making a new revision, revision(), and
  last_change and undo_change: the last change undone while nothing changed since, and
  forget_change: what it took away deleted for good instead.
"""
from ml.datasets.archive import check_archive
from ml.datasets.curation import (
    forget_change, last_change, move_photo, remove_photo, retry_whole_photos, revision, undo_change)
from ml.datasets.importing import import_dataset
from ml.datasets.store import (
    ImportLimits,
    check_name,
    check_new_name,
    delete_dataset,
    get_dataset,
    list_datasets,
)

__all__ = [
    "ImportLimits",
    "check_archive",
    "check_name",
    "check_new_name",
    "delete_dataset",
    "forget_change",
    "get_dataset",
    "import_dataset",
    "last_change",
    "list_datasets",
    "move_photo",
    "remove_photo",
    "retry_whole_photos",
    "revision",
    "undo_change",
]
