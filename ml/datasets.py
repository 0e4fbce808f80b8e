"""Import labelled face photos (a zip or a folder, one sub-folder per class) into a dataset folder."""
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

from ml.errors import DatasetError, DatasetExists, DatasetNotFound, FaceDxError, ImageError, NoFaceFound
from ml.faces import CROP_SIZE, FaceOptions, crop_face
from ml.images import decode_image, encode_png

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
SUBJECTS_FILE = "subjects.csv"         # optional, at the archive's root: file and subject, sex, age, ancestry
ATTRIBUTES = ("sex", "age", "ancestry")
MAX_ATTRIBUTE_LENGTH = 64
MAX_AGE = 130
SUBJECT_IN_NAME = re.compile(r"^(?P<subject>[^_/]+?)__")   # or file names like "<person>__photo1.jpg"
MANIFEST = "dataset.json"
MAX_LABEL_LENGTH = 64


@dataclass(frozen=True)
class ImportLimits:
    """What an archive may hold before it is refused."""
    max_entries: int = 20_000
    max_total_bytes: int = 4 * 1024 ** 3
    max_file_bytes: int = 20 * 1024 ** 2
    max_pixels: int = 40_000_000
    max_ratio: int = 200                 # uncompressed / compressed size of one entry
    min_per_class: int = 5


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
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise DatasetError("A dataset name is 1-64 letters, digits, '-' or '_', starting with a letter or digit.")
    return name


def import_dataset(source, name, root, limits=ImportLimits(), face=FaceOptions(), progress=None):
    """Import `source` (a zip file or a folder) as dataset `name` under `root`; return the Dataset.

    Every file that cannot be used is listed with its reason in the manifest; the archive as a
    whole is refused (DatasetError) when it breaks a limit or leaves too few usable classes.
    """
    check_name(name)
    root = Path(root)
    if (root / name).exists():
        raise DatasetExists(f"A dataset named {name!r} already exists; choose another name or delete it first.")
    source = Path(source)
    if source.is_dir():
        members = _folder_members(source, limits)
    elif zipfile.is_zipfile(source):
        members = _zip_members(source, limits)
    else:
        raise DatasetError("The upload is neither a zip archive nor a folder.")
    members = _strip_common_folder(members)
    members, table = _take_subjects(members)
    _check_classes({m.parts[0] for m in members if m.problem is None and len(m.parts) > 1}, 2)

    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".import-{name}-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        manifest = _write_images(members, staging, limits, face, progress, table)
        manifest.update(id=name, source=source.name, face=face.as_dict(), crop_size=CROP_SIZE,
                        created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        _check_counts(manifest, limits.min_per_class)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1))
        os.rename(staging, root / name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Dataset(root / name, manifest)


def _write_images(members, staging, limits, face, progress, table):
    """Decode, face-crop and store every usable member; return the manifest without its header."""
    labels, counts, images, rejected, warnings, seen = [], [], [], [], [], {}
    for done, member in enumerate(members, 1):
        problem = member.problem or _label_problem(member)
        if problem is None:
            try:
                data = member.read()
                digest = hashlib.sha256(data).hexdigest()
                if digest in seen:
                    raise DatasetError(f"duplicate of {seen[digest]}")
                crop = crop_face(decode_image(data, limits.max_pixels), face)
            except NoFaceFound as exc:
                # Kept short and stable (the retry with the whole-photo fallback looks for it),
                # with the reason when the whole photo was refused too.
                problem = "no face found" + (f": {exc}" if face.fallback == "whole" else "")
            except FaceDxError as exc:
                problem = str(exc)
        if problem is not None:
            rejected.append({"file": member.name, "reason": problem})
        else:
            seen[digest] = member.name
            label = member.parts[0].strip()
            if label not in labels:
                labels.append(label)
                counts.append(0)
                (staging / str(labels.index(label))).mkdir()
            index = labels.index(label)
            counts[index] += 1
            png = encode_png(crop.image)
            relative = f"{index}/{counts[index]:05d}.png"
            (staging / relative).write_bytes(png)
            image = {"file": relative, "label": index, "original": member.name, "face": crop.source,
                     "sha256": hashlib.sha256(png).hexdigest()}
            subject = subject_of(member, table)
            if subject:
                image["subject"] = subject
            attributes, notes = _attributes_of(table.get("/".join(member.parts), {}))
            if attributes:
                image["attributes"] = attributes
            warnings += [{"file": member.name, "reason": note} for note in notes]
            images.append(image)
        if progress:
            progress(done, len(members))
    checksum = hashlib.sha256("".join(f"{i['label']}:{i['sha256']}\n" for i in images).encode()).hexdigest()
    return {"labels": labels, "counts": dict(zip(labels, counts)), "images": images,
            "rejected": rejected, "warnings": warnings, "checksum": checksum}


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
        raise DatasetError(f"A dataset needs at least {minimum} classes (one folder per condition); "
                           f"found {len(labels)}.")


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
            if NAME_PATTERN.match(p.name) and (p / MANIFEST).is_file()]


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
    trash = dataset.path.with_name(f".delete-{name}-{uuid.uuid4().hex}")
    os.rename(dataset.path, trash)
    shutil.rmtree(trash)
