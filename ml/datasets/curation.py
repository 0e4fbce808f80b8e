"""Change an imported dataset's photos: remove one, move one to another class, add those that could be used whole.

Each change makes a new revision of the dataset and keeps the earlier one's manifest under revisions/.
The last change can be undone: the files it took away wait under revisions/undo/ until the next
change (or the undo) of the dataset, and no longer.
"""
import json
import os
import re
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ml.datasets.manifest import Manifest
from ml.datasets.store import (
    REVISION_LOCK,
    REVISIONS_DIR,
    Dataset,
    ImportLimits,
    check_counts,
    get_dataset,
    images_checksum,
    write_atomically,
    write_manifest,
)
from ml.errors import DatasetError
from ml.filelock import exclusive_lock

UNDO_DIR = "undo"                    # inside revisions/: the files the last change took away, and what it was
UNDO_NOTE = "change.json"


def remove_photo(root, name, index, checksum, min_per_class=ImportLimits.min_per_class, note=None):
    """Remove photo `index` of the dataset's revision `checksum`; return the dataset at its new revision.

    `note` says what the change was, for whoever may undo it (see last_change).
    """
    def change(manifest, folder):
        image = manifest["images"].pop(_photo_index(manifest, index))
        return [], [folder / image["file"]]
    return _revise(root, name, checksum, change, min_per_class, note)


def move_photo(root, name, index, label, checksum, min_per_class=ImportLimits.min_per_class, note=None):
    """Move photo `index` of the dataset's revision `checksum` to class `label`; return the dataset at its new revision.

    The crop itself is unchanged, so its features cached by digest are used again.
    """
    def change(manifest, folder):
        image = manifest["images"][_photo_index(manifest, index)]
        if label not in manifest["labels"]:
            raise DatasetError(f"The dataset has no class {label!r}; its classes are {', '.join(manifest['labels'])}.")
        target = manifest["labels"].index(label)
        if image["label"] == target:
            raise DatasetError(f"Photo {index} is already in {label}.")
        old = folder / image["file"]
        image.update(label=target, file=f"{target}/{uuid.uuid4().hex[:16]}.png")
        return [(old, folder / image["file"])], [old]
    return _revise(root, name, checksum, change, min_per_class, note)


def retry_whole_photos(root, name, min_per_class=ImportLimits.min_per_class):
    """Add the photos of a dataset that were rejected for want of a face, each used whole; return how many.

    Like any change of a dataset's photos, it makes a new revision and keeps the earlier one; a
    gallery-only class that reaches `min_per_class` photos becomes one the classifier learns.
    """
    dataset = get_dataset(root, name)
    retried = [item for item in dataset.manifest.rejected if "whole_photo" in item]
    if not retried:
        return 0

    def add_whole_photos(manifest, folder):
        links = []
        for item in retried:
            image = dict(item["whole_photo"])
            label = image.pop("label")
            if label not in manifest["labels"]:
                manifest["labels"].append(label)
                (folder / str(len(manifest["labels"]) - 1)).mkdir()
            index = manifest["labels"].index(label)
            image["file"] = f"{index}/whole-{Path(image['file']).name}"
            links.append((folder / item["thumbnail"], folder / image["file"]))
            manifest["images"].append(dict(image, label=index))
        manifest["rejected"] = [item for item in manifest["rejected"] if "whole_photo" not in item]
        # The model trained on it will meet whole photos too: it uses them where it finds no face.
        manifest["face"]["fallback"] = "whole"
        return links, [old for old, _ in links]
    _revise(root, name, dataset.manifest.checksum, add_whole_photos, min_per_class,
            note=f"Added {len(retried)} photos in which no face was found, each used whole")
    return len(retried)


def revision(root, name, checksum):
    """Return the Manifest of the dataset's revision `checksum` (the current one or an earlier one), or None."""
    dataset = get_dataset(root, name)
    if dataset.manifest.checksum == checksum:
        return dataset.manifest
    if not re.fullmatch(r"[0-9a-f]{64}", checksum or ""):
        return None
    try:
        return Manifest.from_dict(json.loads((dataset.path / REVISIONS_DIR / f"{checksum}.json").read_text()))
    except FileNotFoundError:
        return None


def last_change(root, name):
    """Return the note of the dataset's last change while it can still be undone (nothing changed since), else None."""
    dataset = get_dataset(root, name)
    try:
        change = json.loads((dataset.path / REVISIONS_DIR / UNDO_DIR / UNDO_NOTE).read_text())
    except FileNotFoundError:
        return None
    return change if change["to"] == dataset.manifest.checksum else None


def undo_change(root, name, checksum):
    """Undo the change that made the dataset's revision `checksum`: the revision before it is the current one again.

    Refused (DatasetError) when the dataset changed since, or its last change cannot be undone.
    Return the dataset at the revision it was back to; models trained on either keep their names.
    """
    folder = get_dataset(root, name).path
    undo = folder / REVISIONS_DIR / UNDO_DIR
    with exclusive_lock(folder / REVISION_LOCK):
        current = get_dataset(root, name).manifest.to_dict()
        change = last_change(root, name)
        if change is None or current["checksum"] != checksum:
            raise DatasetError(f"Dataset {name} changed since this page was shown, or its last change cannot be "
                               "undone any more; look at it again.")
        before = json.loads((folder / REVISIONS_DIR / f"{change['from']}.json").read_text())
        kept = folder / REVISIONS_DIR / f"{checksum}.json"
        if not kept.exists():
            write_atomically(kept, current)
        for path in (undo / "files").rglob("*"):
            if path.is_file():
                os.replace(path, folder / path.relative_to(undo / "files"))
        write_manifest(folder, before)
        named = {image["file"] for image in before["images"]} | {item.get("thumbnail") for item in before["rejected"]}
        for image in current["images"]:
            if image["file"] not in named:
                (folder / image["file"]).unlink(missing_ok=True)
        shutil.rmtree(undo)
    return Dataset(folder, before)


def forget_change(root, name, checksum):
    """Delete for good the files the dataset's last change took away (a photo removed for consent): no undo then.

    Refused (DatasetError) when the dataset changed since the revision `checksum` was shown.
    Return the dataset, unchanged otherwise.
    """
    folder = get_dataset(root, name).path
    with exclusive_lock(folder / REVISION_LOCK):
        if get_dataset(root, name).manifest.checksum != checksum:
            raise DatasetError(f"Dataset {name} changed since this page was shown; look at it again.")
        shutil.rmtree(folder / REVISIONS_DIR / UNDO_DIR, ignore_errors=True)
    return get_dataset(root, name)


def _keep_for_undo(folder, removed, change):
    """Keep the files a change takes away, and what it was, in place of those of the change before."""
    undo = folder / REVISIONS_DIR / UNDO_DIR
    shutil.rmtree(undo, ignore_errors=True)
    for path in removed:
        kept = undo / "files" / path.relative_to(folder)
        kept.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, kept)
    undo.mkdir(parents=True, exist_ok=True)
    write_atomically(undo / UNDO_NOTE, change)


def _photo_index(manifest, index):
    if not 0 <= index < len(manifest["images"]):
        raise DatasetError(f"The dataset has no photo {index}.")
    return index


def _revise(root, name, checksum, change, min_per_class, note=None):
    """Apply `change` to the current revision if it is `checksum`, keeping that one under revisions/.

    `change(manifest, folder)` edits the manifest and returns (files to link to a new name, files to
    remove). New names are linked before the new manifest replaces the old one, and old files are
    removed after (kept for an undo until the next change): a reader sees one revision or the
    other, each with all its photos.
    """
    folder = get_dataset(root, name).path
    with exclusive_lock(folder / REVISION_LOCK):
        current = get_dataset(root, name).manifest.to_dict()
        if current["checksum"] != checksum:
            raise DatasetError(f"Dataset {name} changed since this page was shown (another change came first); "
                               "look at it again.")
        manifest = json.loads(json.dumps(current))
        links, removed = change(manifest, folder)
        counts = np.bincount([image["label"] for image in manifest["images"]], minlength=len(manifest["labels"]))
        manifest["counts"] = dict(zip(manifest["labels"], map(int, counts)))
        manifest.pop("gallery_only", None)
        rare = check_counts(dict(manifest, rejected=[]), min_per_class)
        if rare:
            manifest["gallery_only"] = rare
        manifest.update(checksum=images_checksum(manifest["images"]), previous=checksum,
                        revised=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        (folder / REVISIONS_DIR).mkdir(exist_ok=True)
        kept = folder / REVISIONS_DIR / f"{checksum}.json"
        if not kept.exists():
            write_atomically(kept, current)
        for old, new in links:
            os.link(old, new)
        write_manifest(folder, manifest)
        _keep_for_undo(folder, removed, {"from": checksum, "to": manifest["checksum"], "note": note})
    return Dataset(folder, manifest)
