"""Model bundles: one zip that moves a trained version between sites, checked before anything is written.

A bundle holds the version's card, every file it needs, and manifest.json with each file's SHA-256
and size, the software that exported it and the dataset's checksum. With a key, manifest.sig holds
an HMAC-SHA256 of the manifest. Nothing in a bundle can run code when it is imported: only known
file names are accepted, arrays load without pickle, Keras files load in safe mode, and a pickle is
refused outright. Photos never travel: the evaluation keeps probabilities, not file names, and the case
gallery keeps face vectors, with thumbnails only of photos whose dataset declared that they may be shown.
"""
import hashlib
import hmac
import io
import json
import stat
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from ml.errors import BundleError, CardError, VersionExists
from ml.versions.card import ModelCard
from ml.versions.gallery import GALLERY_FILE
from ml.versions.registry import CARD_FILE, THRESHOLDS_FILE, ModelVersion

BUNDLE_FORMAT = 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
# Every file a version may hold; anything else in a bundle is refused.
VERSION_FILES = ("evaluation.json", "head.npz", "head.keras", "backbone.keras", "novelty.npz", "face_tail.npz",
                 GALLERY_FILE, THRESHOLDS_FILE)
LEGACY_HEAD = "head.joblib"          # a pickled head of versions before arrays: converted on export
PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


# A version's arrays (a linear head on 100 classes of 11,500 features, a fine-tuned face-network
# tail, novelty centroids) take tens of MiB; a bundle's may take at most this much.
MAX_ARRAY_BYTES = 512 * 1024 ** 2
MAX_ARRAYS = 256
HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


@dataclass(frozen=True)
class BundleLimits:
    """What a bundle may hold before it is refused."""
    max_total_bytes: int = 2 * 1024 ** 3
    max_file_bytes: int = 1024 ** 3
    max_ratio: int = 200                 # uncompressed / compressed size of one entry


def export_bundle(version, stream, key=None):
    """Write `version` (a ModelVersion) as a bundle zip into the binary `stream`."""
    files = {name: (version.path / name).read_bytes() for name in version.card.files if name != LEGACY_HEAD}
    conversions = []
    if LEGACY_HEAD in version.card.files:
        files["head.npz"] = _converted_head(version)
        conversions.append(f"{LEGACY_HEAD} (a pickle) was converted to head.npz when this version was exported")
    if "evaluation.json" in files:
        rows = json.loads(files["evaluation.json"])
        files["evaluation.json"] = json.dumps([{k: v for k, v in row.items() if k != "file"} for row in rows]).encode()
    if (version.path / THRESHOLDS_FILE).is_file():
        files[THRESHOLDS_FILE] = (version.path / THRESHOLDS_FILE).read_bytes()
    card = version.card.replace(files=[name for name in files if name != THRESHOLDS_FILE],
                                conversions=version.card.conversions + conversions)
    files[CARD_FILE] = json.dumps(card.to_dict(), indent=1).encode()
    manifest = json.dumps({
        "bundle_format": BUNDLE_FORMAT, "version": version.version, "card_format": card.format,
        "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "software": _software(), "dataset_checksum": card.dataset.get("checksum"),
        "files": {name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
                  for name, data in sorted(files.items())},
    }, indent=1).encode()
    with zipfile.ZipFile(stream, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MANIFEST, manifest)
        if key:
            archive.writestr(SIGNATURE, sign(manifest, key))
        for name, data in sorted(files.items()):
            archive.writestr(name, data)


def sign(manifest, key):
    """Return the hex HMAC-SHA256 of a manifest's bytes under `key`."""
    return hmac.new(key.encode(), manifest, hashlib.sha256).hexdigest()


def import_bundle(source, registry, key=None, limits=BundleLimits(), origin="a bundle"):
    """Check a bundle (a path or binary file) and add its version to `registry`, not active; return it.

    Raises BundleError (or VersionExists) with the reason, and then nothing was written.
    """
    archive, entries = _open(source, limits)
    with archive:
        manifest_bytes = _read(archive, entries, MANIFEST, 1024 ** 2)
        manifest = _manifest(manifest_bytes)
        signed = _check_signature(archive, entries, manifest_bytes, key)
        listed = manifest["files"]
        if set(entries) - {MANIFEST, SIGNATURE} != set(listed):
            extra = sorted(set(entries) - {MANIFEST, SIGNATURE} - set(listed))
            missing = sorted(set(listed) - set(entries))
            raise BundleError("The bundle's files do not match its manifest"
                              + (f"; not listed: {', '.join(extra)}" if extra else "")
                              + (f"; missing: {', '.join(missing)}" if missing else "") + ".")
        card = _card(_verified(archive, entries, CARD_FILE, listed))
        lacking = sorted(set(card.files) - set(listed))
        if lacking:
            raise BundleError(f"The card needs files the bundle lacks: {', '.join(lacking)}.")
        _check_runs_here(card)
        if card.version in {v.version for v in registry.versions() + registry.broken()}:
            raise VersionExists(f"Model version {card.version} is already here.")
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        card = card.replace(imported={"at": now, "from": origin, "signed": signed,
                                      "exported": manifest.get("exported"), "software": manifest.get("software")})

        def write(folder):
            for name in listed:
                if name != CARD_FILE:
                    (folder / name).write_bytes(_verified(archive, entries, name, listed))
            _check_arrays(folder, listed)
            _trial(ModelVersion(folder, card))
            return card.files + ([THRESHOLDS_FILE] if THRESHOLDS_FILE in listed else [])
        return registry.save(card, write, keep_identity=True)


def _open(source, limits):
    try:
        archive = zipfile.ZipFile(source)
        infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise BundleError(f"The bundle is not a readable zip archive ({error}).") from None
    if len(infos) > len(VERSION_FILES) + 3:
        raise BundleError(f"The bundle holds {len(infos)} entries; a model version has at most "
                          f"{len(VERSION_FILES) + 3}.")
    if sum(info.file_size for info in infos) > limits.max_total_bytes:
        raise BundleError(f"The bundle unpacks to more than {limits.max_total_bytes:,} bytes.")
    entries = {}
    for info in infos:
        name = info.filename
        if name in entries:
            raise BundleError(f"The bundle holds {name!r} twice.")
        if name.endswith((".joblib", ".pkl", ".pickle")):
            raise BundleError(f"The bundle holds {name!r}, a pickle, which could run code when loaded; refused. "
                              "Export the version again with this FaceDx, which stores heads as arrays.")
        if name not in (MANIFEST, SIGNATURE, CARD_FILE) + VERSION_FILES:
            raise BundleError(f"The bundle holds {name!r}, which is not a file of a model version; refused.")
        if stat.S_ISLNK(info.external_attr >> 16) or info.is_dir() or info.flag_bits & 0x1:
            raise BundleError(f"The bundle entry {name!r} is a link, a folder or encrypted; refused.")
        if info.file_size > limits.max_file_bytes or (
                info.file_size > 1024 ** 2 and info.file_size > limits.max_ratio * max(info.compress_size, 1)):
            raise BundleError(f"The bundle entry {name!r} is too large or compressed like a zip bomb; refused.")
        entries[name] = info
    if MANIFEST not in entries:
        raise BundleError("The bundle has no manifest.json; it was not exported by FaceDx.")
    return archive, entries


def _read(archive, entries, name, max_bytes):
    try:
        with archive.open(entries[name]) as stream:
            data = stream.read(max_bytes + 1)
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as error:
        raise BundleError(f"The bundle entry {name!r} is damaged ({error}).") from None
    if len(data) > max_bytes:
        raise BundleError(f"The bundle entry {name!r} is larger than {max_bytes:,} bytes.")
    return data


def _manifest(data):
    try:
        manifest = json.loads(data)
    except ValueError:
        raise BundleError("The bundle's manifest.json is not valid JSON.") from None
    if not isinstance(manifest, dict) or manifest.get("bundle_format") != BUNDLE_FORMAT:
        found = manifest.get("bundle_format") if isinstance(manifest, dict) else None
        raise BundleError(f"The bundle is of format {found!r}; this FaceDx reads format {BUNDLE_FORMAT}.")
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(
            isinstance(entry, dict) and isinstance(entry.get("sha256"), str) and isinstance(entry.get("size"), int)
            for entry in files.values()):
        raise BundleError("The bundle's manifest does not list its files with their SHA-256 and size.")
    return manifest


def _check_signature(archive, entries, manifest_bytes, key):
    """Return whether the bundle carries a valid signature; with a key, refuse one that does not."""
    if not key:
        return False
    if SIGNATURE not in entries:
        raise BundleError("The bundle is not signed, and this site accepts only signed bundles.")
    found = _read(archive, entries, SIGNATURE, 1024).decode("ascii", "replace").strip()
    if not hmac.compare_digest(found, sign(manifest_bytes, key)):
        raise BundleError("The bundle's signature does not match this site's key: it was changed, or signed "
                          "with another key.")
    return True


def _verified(archive, entries, name, listed):
    """Return an entry's bytes after checking them against the manifest's size and SHA-256."""
    expected = listed[name]
    data = _read(archive, entries, name, expected["size"])
    if len(data) != expected["size"] or hashlib.sha256(data).hexdigest() != expected["sha256"]:
        raise BundleError(f"The bundle's {name} does not match its manifest (size or SHA-256): it was changed "
                          "or damaged after export; refused.")
    if data.startswith(PICKLE_MAGIC):
        raise BundleError(f"The bundle's {name} is a pickle, which could run code when loaded; refused.")
    return data


def _card(data):
    try:
        card = ModelCard.from_dict(json.loads(data))
    except ValueError:
        raise BundleError("The bundle's card.json is not valid JSON.") from None
    except CardError as error:
        raise BundleError(f"The bundle's card cannot be used here: {error}.") from None
    if not isinstance(card.version, str) or not card.files:
        raise BundleError("The bundle's card names no version or no files.")
    if any(name not in VERSION_FILES for name in card.files):
        raise BundleError("The bundle's card lists files a model version cannot hold.")
    return card


def _check_runs_here(card):
    """Refuse a version whose blocks cannot run here, or whose Keras files need another major version."""
    from ml.features.availability import availability
    from ml.learning.options import is_vgg16

    reasons = availability(())
    for block in card.blocks:
        if block not in reasons:
            raise BundleError(f"The bundle's model uses the block {block!r}, which this FaceDx does not know.")
        if reasons[block] and not is_vgg16(block):          # VGG weights travel inside backbone.keras
            raise BundleError(f"The bundle's model needs {block}, which cannot run here: {reasons[block]}.")
    if any(name.endswith(".keras") for name in card.files):
        here, there = _software(), card.software
        for library in ("keras", "tensorflow"):
            if str(there.get(library, "")).split(".")[0] != here[library].split(".")[0]:
                raise BundleError(f"The bundle's model was saved with {library} {there.get(library)}; this site "
                                  f"runs {here[library]}, a different major version.")


def _check_arrays(folder, listed, max_bytes=MAX_ARRAY_BYTES):
    """Refuse array files that are not plain arrays, or whose arrays would take more than `max_bytes` in all.

    Each array's header (dtype and shape) is read first, a few bytes: a file that unpacks to
    gigabytes of zeros is refused before any of it is read.
    """
    total = 0
    for name in listed:
        if not name.endswith(".npz"):
            continue
        try:
            for array_name, dtype, shape in _array_headers(folder / name):
                if dtype.hasobject:
                    raise ValueError(f"{array_name} holds Python objects")
                total += int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
                if total > max_bytes:
                    raise BundleError(f"The bundle's arrays would take more than {max_bytes // 1024 ** 2} MiB of "
                                      f"memory ({name}: {array_name} is {' x '.join(map(str, shape))} "
                                      f"{dtype}); refused.")
            with np.load(folder / name, allow_pickle=False) as arrays:
                for array_name in arrays.files:
                    arrays[array_name]                # a damaged array raises here
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
            raise BundleError(f"The bundle's {name} is not a plain array file ({error}); refused.") from None


def _array_headers(path):
    """Yield (name, dtype, shape) of every array of an .npz file, from the headers alone."""
    with zipfile.ZipFile(path) as arrays:
        members = arrays.infolist()
        if len(members) > MAX_ARRAYS:
            raise ValueError(f"{len(members)} arrays; at most {MAX_ARRAYS}")
        for member in members:
            if not member.filename.endswith(".npy"):
                raise ValueError(f"{member.filename} is not an array")
            with arrays.open(member) as stream:
                version = np.lib.format.read_magic(stream)
                if version not in HEADER_READERS:
                    raise ValueError(f"{member.filename} is an array file of version {version}")
                shape, _, dtype = HEADER_READERS[version](stream)
            yield member.filename[:-4], dtype, shape


def _trial(version):
    """Load the version and predict one blank face, so that a version that cannot run here is refused."""
    from ml.photos.faces import FaceOptions
    from ml.serving.predictor import load_version

    try:
        FaceOptions(**version.card.face)
        load_version(version)
    except Exception as error:          # whatever stops it from running here is the reason to refuse it
        raise BundleError(f"The bundle's model cannot be loaded here: {error}") from None


def _converted_head(version):
    from ml.learning.heads import LinearHead

    head = LinearHead.load(version.card, version.path)
    buffer = io.BytesIO()
    np.savez(buffer, **head.model.arrays())
    return buffer.getvalue()


def _software():
    from ml.learning.training import software_versions

    return software_versions()
