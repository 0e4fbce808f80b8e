"""Import labelled face photos (a zip or a folder, one sub-folder per class) into a dataset folder."""
import hashlib
import json
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ml.datasets.archive import label_problem, read_members
from ml.datasets.store import (
    MANIFEST,
    STAGING_PREFIX,
    Dataset,
    ImportLimits,
    check_counts,
    check_new_name,
    images_checksum,
    rename_into_place,
)
from ml.datasets.subjects import attributes_of, consent_of, subject_of
from ml.errors import DatasetError, DiskFull, FaceDxError, NoFaceFound, is_disk_full
from ml.photos.faces import CROP_SIZE, FaceOptions, crop_face, load_face_networks, whole_photo
from ml.photos.images import decode_image, encode_png
from ml.progress import Pace, Progress

REJECTED_DIR = "rejected"              # inside a dataset: thumbnails of the rejected photos that decoded
THUMBNAIL_SIZE = 96


def import_dataset(source, name, root, limits=ImportLimits(), face=FaceOptions(), progress=None, source_name=None):
    """Import `source` (a zip file or a folder) as dataset `name` under `root`; return the Dataset.

    Every file that cannot be used is listed with its reason in the manifest; the archive as a
    whole is refused (DatasetError) when it breaks a limit or leaves too few usable classes.
    `progress` receives a Progress record after each file; raising ml.progress.Cancelled from it
    stops the import and leaves nothing behind. `source_name` is the name the archive had on the
    sender's computer, shown on the dataset's page (default: the file's own name).
    """
    root = Path(root)
    check_new_name(root, name)
    source = Path(source)
    members, table = read_members(source, limits)
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f"{STAGING_PREFIX}{name}-{uuid.uuid4().hex}"
    try:
        staging.mkdir()
        manifest = _write_images(members, staging, limits, face, progress, table)
        manifest.update(id=name, source=source_name or source.name, face=face.as_dict(), crop_size=CROP_SIZE,
                        created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        rare = check_counts(manifest, limits.min_per_class)
        if rare:
            manifest["gallery_only"] = rare
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1))
        rename_into_place(staging, root / name)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if is_disk_full(exc):
            raise DiskFull() from exc
        raise
    return Dataset(root / name, manifest)


def _write_images(members, staging, limits, face, progress, table):
    """Decode, face-crop and store every usable member; return the manifest without its header."""
    labels, counts, images, rejected, warnings, seen = [], [], [], [], [], {}
    if progress:
        progress(Progress("starting"))
    load_face_networks(face.detector)            # before the first photo: its time is not a photo's
    pace = Pace()
    for done, member in enumerate(members, 1):
        problem, rgb, crop, digest = _face_of(member, limits, face, seen)
        if problem is not None:
            rejected.append(_rejection(member, problem, rgb, face, staging, len(rejected) + 1, table,
                                       seen.get(digest)))
        else:
            seen[digest] = member.name
            label = member.parts[0].strip()
            if label not in labels:
                labels.append(label)
                counts.append(0)
                (staging / str(labels.index(label))).mkdir()
            index = labels.index(label)
            counts[index] += 1
            image, notes = _image_record(member, table, crop, staging, f"{index}/{counts[index]:05d}.png")
            images.append(dict(image, label=index))
            warnings += notes
        if progress:
            progress(pace.progress("import", done, len(members)))
    return {"labels": labels, "counts": dict(zip(labels, counts)), "images": images,
            "rejected": rejected, "warnings": warnings, "checksum": images_checksum(images)}


def _face_of(member, limits, face, seen):
    """Return (why a member cannot be used or None, its pixels where they decode, its face crop, its sha256)."""
    problem = member.problem or label_problem(member)
    rgb = crop = digest = None
    if problem is None:
        try:
            data = member.read()
            digest = hashlib.sha256(data).hexdigest()
            if digest in seen:
                # The first copy in the archive is kept; the reason names it, on the copy left out.
                raise DatasetError(f"duplicate of {seen[digest]}")
            rgb = decode_image(data, limits.max_pixels)
            crop = crop_face(rgb, face)
        except NoFaceFound as exc:
            # Kept short and stable (the retry with the whole-photo fallback looks for it),
            # with the reason when the whole photo was refused too.
            problem = "no face found" + (f": {exc}" if face.fallback == "whole" else "")
        except FaceDxError as exc:
            problem = str(exc)
    return problem, rgb, crop, digest


def _image_record(member, table, crop, staging, relative):
    """Store a face crop as `relative` in the dataset folder; return (its manifest entry, notes on subjects.csv)."""
    png = encode_png(crop.image)
    (staging / relative).write_bytes(png)
    image = {"file": relative, "original": member.name, "face": crop.source, "sha256": hashlib.sha256(png).hexdigest()}
    subject = subject_of(member, table)
    if subject:
        image["subject"] = subject
    cells = table.get("/".join(member.parts), {})
    attributes, notes = attributes_of(cells)
    if attributes:
        image["attributes"] = attributes
    consent, consent_notes = consent_of(cells)
    if consent:
        image["display_consent"] = True
    return image, [{"file": member.name, "reason": note} for note in notes + consent_notes]


def _rejection(member, problem, rgb, face, staging, number, table, kept=None):
    """Return the manifest entry of a rejected file (of a copy: the file `kept`), with a thumbnail where it decoded.

    A photo in which no face was found is kept whole, at the size of a face crop, when the whole
    photo would do: the dataset's page offers to add those with the whole-photo fallback.
    """
    item = {"file": member.name, "reason": problem}
    if kept is not None:
        item["duplicate_of"] = kept
    if rgb is None:
        return item
    (staging / REJECTED_DIR).mkdir(exist_ok=True)
    item["thumbnail"] = f"{REJECTED_DIR}/{number:05d}.png"
    whole = None
    if problem == "no face found" and face.fallback == "none":
        try:
            whole = whole_photo(rgb)
        except NoFaceFound:
            pass
    if whole is None:
        (staging / item["thumbnail"]).write_bytes(encode_png(_thumbnail(rgb)))
        return item
    image, _ = _image_record(member, table, whole, staging, item["thumbnail"])
    item["whole_photo"] = dict(image, label=member.parts[0].strip())
    return item


def _thumbnail(rgb):
    """Return a copy of a photo that fits in THUMBNAIL_SIZE pixels, keeping its shape."""
    from PIL import Image

    image = Image.fromarray(rgb)
    image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    return np.asarray(image)
