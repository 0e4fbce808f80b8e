"""Import labelled face photos (a zip or a folder, one sub-folder per class) into a dataset folder."""
import errno
import hashlib
import json
import math
import os
import re
import shutil
import stat
import uuid
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ml.errors import (
    DatasetError,
    DatasetExists,
    DatasetNotFound,
    DiskFull,
    FaceDxError,
    ImageError,
    NoFaceFound,
    is_disk_full,
)
from ml.filelock import exclusive_lock
from ml.photos.faces import CROP_SIZE, FaceOptions, crop_face, whole_photo
from ml.photos.images import decode_image, encode_png
from ml.progress import Pace

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")      # the whole name: always fullmatch()
STAGING_PREFIX = ".import-"            # a dataset being imported, renamed into place once complete
TRASH_PREFIX = ".delete-"              # a dataset being deleted, renamed out of sight first
SUBJECTS_FILE = "subjects.csv"         # optional, at the archive's root: file and subject, sex, age, ancestry
ATTRIBUTES = ("sex", "age", "ancestry")
MAX_ATTRIBUTE_LENGTH = 64
MAX_AGE = 130
SUBJECT_IN_NAME = re.compile(r"^(?P<subject>[^_/]+?)__")   # or file names like "<person>__photo1.jpg"
MANIFEST = "dataset.json"
REJECTED_DIR = "rejected"              # inside a dataset: thumbnails of the rejected photos that decoded
THUMBNAIL_SIZE = 96
MAX_LABEL_LENGTH = 64
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
    manifest: dict

    @property
    def id(self):
        return self.manifest["id"]

    @property
    def labels(self):
        return self.manifest["labels"]

    @property
    def grouped(self):
        """Whether every photo names its person, so evaluation can keep a person out of both sides."""
        images = self.manifest["images"]
        return bool(images) and all(item.get("subject") for item in images)

    def load_crops(self):
        """Return (crops uint8 [n, CROP_SIZE, CROP_SIZE, 3], label indices, image sha256s, person ids or None)."""
        from PIL import Image

        images = self.manifest["images"]
        crops = np.stack([np.asarray(Image.open(self.path / item["file"]).convert("RGB")) for item in images])
        subjects = [item["subject"] for item in images] if self.grouped else None
        return crops, np.array([item["label"] for item in images]), [item["sha256"] for item in images], subjects

    def attributes(self):
        """Return each photo's sex, age and ancestry as far as given ({} where none), in load_crops() order."""
        return [dict(item.get("attributes", {})) for item in self.manifest["images"]]


@dataclass(frozen=True)
class _Member:
    """One file offered by an archive or folder: where it claims to be and how to read it."""
    name: str
    parts: tuple
    read: object = None          # callable returning bytes, None when already rejected
    problem: str | None = None


def check_name(name):
    """Refuse a dataset name that is not a safe identifier."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise DatasetError("A dataset name is 1-64 letters, digits, '-' or '_', starting with a letter or digit.")
    return name


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
    members, table = _read_members(source, limits)
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f"{STAGING_PREFIX}{name}-{uuid.uuid4().hex}"
    try:
        staging.mkdir()
        manifest = _write_images(members, staging, limits, face, progress, table)
        manifest.update(id=name, source=source_name or source.name, face=face.as_dict(), crop_size=CROP_SIZE,
                        created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        _check_counts(manifest, limits.min_per_class)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1))
        _rename_into_place(staging, root / name)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if is_disk_full(exc):
            raise DiskFull() from exc
        raise
    return Dataset(root / name, manifest)


def check_archive(source, limits=ImportLimits()):
    """Refuse at once a zip or folder that the import would refuse before reading any photo."""
    _read_members(Path(source), limits)


def _read_members(source, limits):
    """Return (the files offered, subjects.csv's cells) of a zip or folder, refusing one that breaks a limit."""
    if source.is_dir():
        members = _folder_members(source, limits)
    elif zipfile.is_zipfile(source):
        members = _zip_members(source, limits)
    else:
        raise DatasetError("The upload is neither a zip archive nor a folder.")
    members, table = _take_subjects(_strip_common_folder(members))
    classes = {m.parts[0] for m in members if m.problem is None and len(m.parts) > 1}
    _check_classes(classes, 2)
    if len(classes) > limits.max_classes:
        raise DatasetError(f"The archive has {len(classes)} classes (folders); training handles at most "
                           f"{limits.max_classes} (FACEDX_MAX_CLASSES).")
    return members, table


def check_new_name(root, name):
    """Refuse a dataset name that is not a safe identifier or that a dataset under `root` already has."""
    check_name(name)
    if (Path(root) / name).exists():
        raise _taken(name)


def _taken(name):
    return DatasetExists(f"A dataset named {name!r} already exists; choose another name or delete it first.")


def _rename_into_place(staging, target):
    """Rename a complete staging folder to its dataset name, unless an import of the same name finished first."""
    try:
        os.rename(staging, target)
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise _taken(target.name) from None
        raise


def _write_images(members, staging, limits, face, progress, table):
    """Decode, face-crop and store every usable member; return the manifest without its header."""
    labels, counts, images, rejected, warnings, seen = [], [], [], [], [], {}
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
    problem = member.problem or _label_problem(member)
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
    attributes, notes = _attributes_of(table.get("/".join(member.parts), {}))
    if attributes:
        image["attributes"] = attributes
    return image, [{"file": member.name, "reason": note} for note in notes]


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


def images_checksum(images):
    """Return the checksum of a dataset's content: every photo's class and crop, in order."""
    return hashlib.sha256("".join(f"{i['label']}:{i['sha256']}\n" for i in images).encode()).hexdigest()


def retry_whole_photos(root, name):
    """Add the photos of a dataset that were rejected for want of a face, each used whole; return how many.

    Like any change of a dataset's photos, it makes a new revision and keeps the earlier one.
    """
    dataset = get_dataset(root, name)
    retried = [item for item in dataset.manifest["rejected"] if "whole_photo" in item]
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
    _revise(root, name, dataset.manifest["checksum"], add_whole_photos, min_per_class=0)   # only adds photos
    return len(retried)


def _write_manifest(folder, manifest):
    """Replace a dataset's manifest at once: a reader sees the old one or the new one, never half of one."""
    _write_atomically(folder / MANIFEST, manifest)


def _take_subjects(members):
    """Remove subjects.csv from the members and return (members, {path inside the archive: {column: text}})."""
    table = next((m for m in members if m.problem is None and m.parts == (SUBJECTS_FILE,)), None)
    if table is None:
        return members, {}
    import csv
    import io

    try:
        rows = csv.DictReader(io.StringIO(table.read().decode("utf-8-sig")))
        columns = [c for c in ("subject", *ATTRIBUTES) if c in (rows.fieldnames or ())]
        if "file" not in (rows.fieldnames or ()) or not columns:
            raise DatasetError(f"its header is {', '.join(rows.fieldnames or ())[:100] or 'empty'}")
        cells = {(row["file"] or "").strip().replace("\\", "/"):
                 {c: text for c in columns if (text := (row[c] or "").strip())} for row in rows}
    except (UnicodeDecodeError, csv.Error, FaceDxError) as exc:
        raise DatasetError(f"{SUBJECTS_FILE} must be a UTF-8 CSV with a column file and one or more of the columns "
                           f"subject, sex, age and ancestry ({exc}).") from None
    return [m for m in members if m is not table], cells


def subject_of(member, table):
    """Return the person a photo shows, from subjects.csv or a '<person>__' file-name prefix, or None."""
    subject = table.get("/".join(member.parts), {}).get("subject")
    if subject:
        return subject[:64]
    match = SUBJECT_IN_NAME.match(member.parts[-1])
    return match.group("subject")[:64] if match else None


def _attributes_of(cells):
    """Return (the sex, age and ancestry that a photo's subjects.csv row gives, notes on the cells left out)."""
    attributes, notes = {}, []
    for column in ATTRIBUTES:
        text = cells.get(column)
        if not text:
            continue
        value = _age(text) if column == "age" else _attribute_text(text)
        if value is None:
            rule = (f"not a number of years from 0 to {MAX_AGE}" if column == "age"
                    else f"longer than {MAX_ATTRIBUTE_LENGTH} characters or unprintable")
            notes.append(f"{SUBJECTS_FILE}: {column} {text[:20]!r} ignored ({rule})")
        else:
            attributes[column] = value
    return attributes, notes


def _age(text):
    """Return an age in years, or None when the text is not a finite number from 0 to MAX_AGE."""
    try:
        age = float(text)
    except ValueError:
        return None
    return age if math.isfinite(age) and 0 <= age <= MAX_AGE else None


def _attribute_text(text):
    """Return a free-text attribute, or None when it is too long or unprintable."""
    return text if len(text) <= MAX_ATTRIBUTE_LENGTH and text.isprintable() else None


def _label_problem(member):
    """Say why a member's place in the tree cannot give it a class, or None."""
    if len(member.parts) < 2:
        return "not inside a class folder"
    label = member.parts[0].strip()
    if not label or len(label) > MAX_LABEL_LENGTH or not label.isprintable():
        return f"class folder name is empty, longer than {MAX_LABEL_LENGTH} characters or unprintable"
    return None


def _check_classes(labels, minimum):
    if len(labels) < minimum:
        found = f": {', '.join(sorted(labels))}" if labels else ""
        raise DatasetError(f"A dataset needs at least {minimum} classes (one folder per condition); "
                           f"found {len(labels)}{found}.")


def _check_counts(manifest, min_per_class):
    """Refuse a dataset with too few classes, or a class with too few usable photos."""
    _check_classes(manifest["labels"], 2)
    small = {label: n for label, n in manifest["counts"].items() if n < min_per_class}
    if small:
        listed = ", ".join(f"{label}: {n}" for label, n in small.items())
        reasons = {}
        for item in manifest["rejected"]:
            reasons[item["reason"]] = reasons.get(item["reason"], 0) + 1
        why = "; ".join(f"{n} x {reason}" for reason, n in sorted(reasons.items(), key=lambda r: -r[1])[:5])
        raise DatasetError(f"Every class needs at least {min_per_class} usable photos; too few in {listed}."
                           + (f" Rejected files: {why}." if why else ""))


def _zip_members(path, limits):
    """List the members of a zip archive, refusing archives that break the limits."""
    try:
        archive = zipfile.ZipFile(path)
        infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DatasetError(f"The zip archive cannot be read ({exc}).") from None
    if len(infos) > limits.max_entries:
        raise DatasetError(f"The archive holds {len(infos):,} entries; the limit is {limits.max_entries:,}.")
    total = sum(info.file_size for info in infos)
    if total > limits.max_total_bytes:
        raise DatasetError(f"The archive unpacks to {total:,} bytes; the limit is {limits.max_total_bytes:,}.")
    members = []
    for info in infos:
        if info.is_dir():
            continue
        if info.file_size > 1024 ** 2 and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            raise DatasetError(f"The archive entry {info.filename!r} is compressed more than "
                               f"{limits.max_ratio}:1, which only a zip bomb does; the archive is refused.")
        parts, problem = _split_path(info.filename)
        if problem is None:
            if stat.S_ISLNK(info.external_attr >> 16):
                problem = "symbolic link"
            elif info.flag_bits & 0x1:
                problem = "encrypted"
            elif info.file_size > limits.max_file_bytes:
                problem = f"too large ({info.file_size:,} bytes; the limit is {limits.max_file_bytes:,})"
        members.append(_Member(info.filename, parts, _zip_reader(archive, info, limits.max_file_bytes), problem))
    return members


def _zip_reader(archive, info, max_bytes):
    """Return a function that reads one entry, never more than max_bytes."""
    def read():
        try:
            with archive.open(info) as stream:
                data = stream.read(max_bytes + 1)
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as exc:
            raise ImageError(f"damaged archive entry ({exc})") from None
        if len(data) > max_bytes:
            raise ImageError(f"too large (more than {max_bytes:,} bytes)")
        return data
    return read


def _folder_members(folder, limits):
    """List the files under a folder without following symbolic links."""
    members = []
    for directory, subdirs, files in os.walk(folder, followlinks=False):
        for name in sorted(files) + [d for d in subdirs if os.path.islink(os.path.join(directory, d))]:
            full = Path(directory) / name
            relative = full.relative_to(folder).as_posix()
            parts, problem = _split_path(relative)
            if problem is None and full.is_symlink():
                problem = "symbolic link"
            elif problem is None and full.stat().st_size > limits.max_file_bytes:
                problem = f"too large ({full.stat().st_size:,} bytes; the limit is {limits.max_file_bytes:,})"
            members.append(_Member(relative, parts, full.read_bytes, problem))
        subdirs.sort()
        if len(members) > limits.max_entries:
            raise DatasetError(f"The folder holds more than {limits.max_entries:,} files.")
    return members


def _split_path(name):
    """Split an archive path into parts, or say why it is not acceptable."""
    normal = name.replace("\\", "/")
    parts = tuple(p for p in normal.split("/") if p not in ("", "."))
    if normal.startswith("/") or re.match(r"^[A-Za-z]:", normal) or ".." in parts:
        return parts, "unsafe path (absolute, or leading outside the archive)"
    if any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return parts, "hidden or system file"
    return parts, None


def _strip_common_folder(members):
    """Drop one top folder that holds everything (a zipped folder of class folders and subjects.csv)."""
    usable = [m for m in members if m.problem is None]
    photos = [m for m in usable if m.parts[-1] != SUBJECTS_FILE]
    tops = {m.parts[0] for m in usable}
    if len(tops) == 1 and photos and all(len(m.parts) >= 3 for m in photos):
        return [_Member(m.name, m.parts[1:] if m.problem is None else m.parts, m.read, m.problem)
                for m in members]
    return members


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


def remove_photo(root, name, index, checksum, min_per_class=ImportLimits.min_per_class):
    """Remove photo `index` of the dataset's revision `checksum`; return the dataset at its new revision."""
    def change(manifest, folder):
        image = manifest["images"].pop(_photo_index(manifest, index))
        return [], [folder / image["file"]]
    return _revise(root, name, checksum, change, min_per_class)


def move_photo(root, name, index, label, checksum, min_per_class=ImportLimits.min_per_class):
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
    return _revise(root, name, checksum, change, min_per_class)


def revision(root, name, checksum):
    """Return the manifest of the dataset's revision `checksum` (the current one or an earlier one), or None."""
    dataset = get_dataset(root, name)
    if dataset.manifest["checksum"] == checksum:
        return dataset.manifest
    if not re.fullmatch(r"[0-9a-f]{64}", checksum or ""):
        return None
    try:
        return json.loads((dataset.path / REVISIONS_DIR / f"{checksum}.json").read_text())
    except FileNotFoundError:
        return None


def _photo_index(manifest, index):
    if not 0 <= index < len(manifest["images"]):
        raise DatasetError(f"The dataset has no photo {index}.")
    return index


def _revise(root, name, checksum, change, min_per_class):
    """Apply `change` to the current revision if it is `checksum`, keeping that one under revisions/.

    `change(manifest, folder)` edits the manifest and returns (files to link to a new name, files to
    remove). New names are linked before the new manifest replaces the old one, and old files are
    removed after: a reader sees one revision or the other, each with all its photos.
    """
    folder = get_dataset(root, name).path
    with exclusive_lock(folder / REVISION_LOCK):
        current = get_dataset(root, name).manifest
        if current["checksum"] != checksum:
            raise DatasetError(f"Dataset {name} changed since this page was shown (another change came first); "
                               "look at it again.")
        manifest = json.loads(json.dumps(current))
        links, removed = change(manifest, folder)
        counts = np.bincount([image["label"] for image in manifest["images"]], minlength=len(manifest["labels"]))
        manifest["counts"] = dict(zip(manifest["labels"], map(int, counts)))
        _check_counts(dict(manifest, rejected=[]), min_per_class)
        manifest.update(checksum=images_checksum(manifest["images"]), previous=checksum,
                        revised=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        (folder / REVISIONS_DIR).mkdir(exist_ok=True)
        kept = folder / REVISIONS_DIR / f"{checksum}.json"
        if not kept.exists():
            _write_atomically(kept, current)
        for old, new in links:
            os.link(old, new)
        _write_manifest(folder, manifest)
        for path in removed:
            path.unlink()
    return Dataset(folder, manifest)


def _write_atomically(path, content):
    staging = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    staging.write_text(json.dumps(content, indent=1))
    os.replace(staging, path)
