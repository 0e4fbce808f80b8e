"""Read the files of an uploaded zip archive or folder safely, refusing one that breaks a limit."""
import os
import re
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ml.datasets.store import ImportLimits, check_classes
from ml.datasets.subjects import SUBJECTS_FILE, take_subjects
from ml.errors import DatasetError, ImageError

MAX_LABEL_LENGTH = 64


@dataclass(frozen=True)
class _Member:
    """One file offered by an archive or folder: where it claims to be and how to read it."""
    name: str
    parts: tuple
    read: object = None          # callable returning bytes, None when already rejected
    problem: str | None = None


def check_archive(source, limits=ImportLimits()):
    """Refuse at once a zip or folder that the import would refuse before reading any photo."""
    read_members(Path(source), limits)


def read_members(source, limits):
    """Return (the files offered, subjects.csv's cells) of a zip or folder, refusing one that breaks a limit."""
    if source.is_dir():
        members = _folder_members(source, limits)
    elif zipfile.is_zipfile(source):
        members = _zip_members(source, limits)
    else:
        raise DatasetError("The upload is neither a zip archive nor a folder.")
    members, table = take_subjects(_strip_common_folder(members))
    classes = {m.parts[0] for m in members if m.problem is None and len(m.parts) > 1}
    check_classes(classes, 2)
    if len(classes) > limits.max_classes:
        raise DatasetError(f"The archive has {len(classes)} classes (folders); training handles at most "
                           f"{limits.max_classes} (FACEDX_MAX_CLASSES).")
    return members, table


def label_problem(member):
    """Say why a member's place in the tree cannot give it a class, or None."""
    if len(member.parts) < 2:
        return "not inside a class folder"
    label = member.parts[0].strip()
    if not label or len(label) > MAX_LABEL_LENGTH or not label.isprintable():
        return f"class folder name is empty, longer than {MAX_LABEL_LENGTH} characters or unprintable"
    return None


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
