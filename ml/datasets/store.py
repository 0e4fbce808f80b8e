"""Where datasets live: their names, their manifests, and listing, reading, renaming and deleting them."""
import errno
import hashlib
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ml.datasets.manifest import Manifest
from ml.errors import DatasetError, DatasetExists, DatasetNotFound

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")      # the whole name: always fullmatch()
STAGING_PREFIX = ".import-"            # a dataset being imported, renamed into place once complete
TRASH_PREFIX = ".delete-"              # a dataset being deleted, renamed out of sight first
MANIFEST = "dataset.json"
REVISIONS_DIR = "revisions"            # inside a dataset: the manifest of each earlier revision, by checksum
REVISION_LOCK = ".revision.lock"       # held while a change makes a new revision


@dataclass(frozen=True)
class ImportLimits:
    """What an archive may hold before it is refused."""
    max_entries: int = 20_000
    max_total_bytes: int = 4 * 1024 ** 3
    max_file_bytes: int = 20 * 1024 ** 2
    max_pixels: int = 40_000_000
    max_ratio: int = 200                 # uncompressed / compressed size of one entry
    min_per_class: int = 5
    # A guard: a linear head's memory and time grow with classes x photos (400 classes asked one
    # Newton fit for 1.2 TiB before its solver was changed); raise it where a larger run is measured.
    max_classes: int = 100


@dataclass(frozen=True)
class Dataset:
    """An imported dataset: its folder and its manifest."""
    path: Path
    manifest: Manifest                # built from the JSON object too

    def __post_init__(self):
        if isinstance(self.manifest, dict):
            object.__setattr__(self, "manifest", Manifest.from_dict(self.manifest))

    @property
    def id(self):
        return self.manifest.id

    @property
    def labels(self):
        return self.manifest.labels

    @property
    def grouped(self):
        """Whether every photo names its person, so evaluation can keep a person out of both sides."""
        images = self.manifest.images
        return bool(images) and all(item.get("subject") for item in images)

    def labels_and_subjects(self):
        """Return (label indices, person ids or None when not every photo names one), without reading a photo."""
        images = self.manifest.images
        return np.array([item["label"] for item in images]), \
            [item["subject"] for item in images] if self.grouped else None

    def load_crops(self):
        """Return (crops uint8 [n, CROP_SIZE, CROP_SIZE, 3], label indices, image sha256s, person ids or None)."""
        from PIL import Image

        images = self.manifest.images
        crops = np.stack([np.asarray(Image.open(self.path / item["file"]).convert("RGB")) for item in images])
        labels, subjects = self.labels_and_subjects()
        return crops, labels, [item["sha256"] for item in images], subjects

    def classifier_part(self):
        """Return the dataset without its gallery-only classes: the same folder and revision, for the classifier.

        A photo's label is then an index into the classes kept; `classifier_rows` says which photos those are.
        """
        rare = set(self.manifest.gallery_only or ())
        kept = [label for label in self.labels if label not in rare]
        index = {old: kept.index(label) for old, label in enumerate(self.labels) if label in kept}
        images = [dict(item, label=index[item["label"]]) for item in self.manifest.images if item["label"] in index]
        manifest = self.manifest.to_dict() | {"labels": kept, "images": images, "gallery_only": None,
                                              "counts": {label: self.manifest.counts[label] for label in kept}}
        return Dataset(self.path, manifest)

    def classifier_rows(self):
        """Return the indices (in load_crops() order) of the photos of classes the classifier learns."""
        rare = {self.labels.index(label) for label in self.manifest.gallery_only or ()}
        return np.array([i for i, item in enumerate(self.manifest.images) if item["label"] not in rare], dtype=int)

    def consented(self):
        """Return, in load_crops() order, whether each photo's dataset declared that it may be shown."""
        return np.array([bool(item.get("display_consent")) for item in self.manifest.images], dtype=bool)

    def attributes(self):
        """Return each photo's sex, age and ancestry as far as given ({} where none), in load_crops() order."""
        return [dict(item.get("attributes", {})) for item in self.manifest.images]


def check_name(name):
    """Refuse a dataset name that is not a safe identifier."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise DatasetError("A dataset name is 1-64 letters, digits, '-' or '_', starting with a letter or digit.")
    return name


def check_new_name(root, name):
    """Refuse a dataset name that is not a safe identifier or that a dataset under `root` already has."""
    check_name(name)
    if (Path(root) / name).exists():
        raise _taken(name)


def _taken(name):
    return DatasetExists(f"A dataset named {name!r} already exists; choose another name or delete it first.")


def rename_into_place(staging, target):
    """Rename a complete staging folder to its dataset name, unless an import of the same name finished first."""
    try:
        os.rename(staging, target)
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise _taken(target.name) from None
        raise


def list_datasets(root):
    """Return every imported dataset under `root`, by name."""
    root = Path(root)
    if not root.is_dir():
        return []
    return [get_dataset(root, p.name) for p in sorted(root.iterdir())
            if NAME_PATTERN.fullmatch(p.name) and (p / MANIFEST).is_file()]


def get_dataset(root, name):
    """Return the dataset called `name`, or raise DatasetError."""
    check_name(name)
    path = Path(root) / name
    try:
        return Dataset(path, json.loads((path / MANIFEST).read_text()))
    except FileNotFoundError:
        raise DatasetNotFound(f"There is no dataset named {name!r}.") from None


def delete_dataset(root, name):
    """Remove a dataset with its images and cached features."""
    dataset = get_dataset(root, name)
    trash = dataset.path.with_name(f"{TRASH_PREFIX}{name}-{uuid.uuid4().hex}")
    os.rename(dataset.path, trash)
    shutil.rmtree(trash)


def images_checksum(images):
    """Return the checksum of a dataset's content: every photo's class and crop, in order."""
    return hashlib.sha256("".join(f"{i['label']}:{i['sha256']}\n" for i in images).encode()).hexdigest()


def check_classes(labels, minimum):
    if len(labels) < minimum:
        found = f": {', '.join(sorted(labels))}" if labels else ""
        raise DatasetError(f"A dataset needs at least {minimum} classes (one folder per condition); "
                           f"found {len(labels)}{found}.")


def check_counts(manifest, min_per_class):
    """Return the gallery-only classes of a manifest (1 to min_per_class - 1 photos); refuse one a model cannot learn.

    A gallery-only class is kept for matching among the nearest validated cases, never for the
    classifier; a model still needs two classes of at least `min_per_class` usable photos, and
    every class at least one photo.
    """
    check_classes(manifest["labels"], 2)
    counts = manifest["counts"]
    empty = [label for label, n in counts.items() if n == 0]
    if empty:
        raise DatasetError(f"Every class needs at least one photo; none is left in {', '.join(empty)}.")
    rare = [label for label, n in counts.items() if n < min_per_class]
    if len(counts) - len(rare) < 2:
        listed = ", ".join(f"{label}: {counts[label]}" for label in rare)
        reasons = {}
        for item in manifest["rejected"]:
            reasons[item["reason"]] = reasons.get(item["reason"], 0) + 1
        why = "; ".join(f"{n} x {reason}" for reason, n in sorted(reasons.items(), key=lambda r: -r[1])[:5])
        raise DatasetError(f"Two classes or more need at least {min_per_class} usable photos; too few in {listed}. "
                           f"A class of 1 to {min_per_class - 1} photos is kept as gallery-only (shown among the "
                           "nearest validated cases, never in the classifier's probabilities), but a model needs "
                           "two classes it can learn." + (f" Rejected files: {why}." if why else ""))
    return rare


def write_manifest(folder, manifest):
    """Replace a dataset's manifest at once: a reader sees the old one or the new one, never half of one."""
    write_atomically(folder / MANIFEST, manifest)


def write_atomically(path, content):
    staging = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    staging.write_text(json.dumps(content, indent=1))
    os.replace(staging, path)
