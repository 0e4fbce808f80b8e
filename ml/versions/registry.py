"""Model versions on disk: written atomically, one of them active."""
import json
import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ml.errors import (
    CardError,
    NoActiveModel,
    NotUseful,
    RegistryError,
    VersionActive,
    VersionBroken,
    VersionExists,
    VersionNotFound,
)
from ml.filelock import exclusive_lock
from ml.versions.card import ModelCard, check_thresholds

log = logging.getLogger(__name__)

VERSION_PATTERN = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")
CARD_FILE = "card.json"
ACTIVE_FILE = "active.json"
THRESHOLDS_FILE = "abstention.json"      # an administrator's thresholds, beside the immutable card


@dataclass(frozen=True)
class ModelVersion:
    """One trained model: its folder and its card."""
    path: Path
    card: ModelCard

    @property
    def version(self):
        return self.path.name


@dataclass(frozen=True)
class BrokenVersion:
    """A version folder that cannot be served: its card or one of its files is damaged or missing."""
    path: Path
    problem: str

    @property
    def version(self):
        return self.path.name


class ModelRegistry:
    """The folder of model versions and the pointer to the active one."""

    def __init__(self, root):
        self.root = Path(root)

    def save(self, card, write, keep_identity=False):
        """Write a new version atomically and return it; it is not activated.

        `write(folder)` writes the model's files into a staging folder and returns their names.
        With `keep_identity` (an imported version) the card's own version name and date are kept.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        now = datetime.now(timezone.utc)
        if keep_identity:
            version, created = card.version, card.created
            if not (isinstance(version, str) and VERSION_PATTERN.fullmatch(version)):
                raise RegistryError(f"{version!r} is not a model version name.")
        else:
            version, created = f"{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}", now.isoformat(timespec="seconds")
        staging = self.root / f".tmp-{version}-{uuid.uuid4().hex[:6]}"
        staging.mkdir()
        try:
            files = list(write(staging))
            card = card.replace(version=version, created=created, files=files)
            _write_durably(staging / CARD_FILE, json.dumps(card.to_dict(), indent=1))
            for name in files:
                _fsync(staging / name)
            try:
                os.rename(staging, self.root / version)
            except OSError:
                if (self.root / version).exists():
                    raise VersionExists(f"Model version {version} is already here.") from None
                raise
            _fsync(self.root)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return ModelVersion(self.root / version, card)

    def versions(self):
        """Return every version that can be served, newest first."""
        return [v for v in self._all() if isinstance(v, ModelVersion)]

    def broken(self):
        """Return the version folders that cannot be served, each with its problem, newest first."""
        return [v for v in self._all() if isinstance(v, BrokenVersion)]

    def _all(self):
        if not self.root.is_dir():
            return []
        names = sorted((p.name for p in self.root.iterdir() if VERSION_PATTERN.fullmatch(p.name)), reverse=True)
        return [self._read(name) for name in names]

    def get(self, version):
        """Return a version that can be served; raise VersionNotFound or VersionBroken."""
        if not (isinstance(version, str) and VERSION_PATTERN.fullmatch(version) and (self.root / version).is_dir()):
            raise VersionNotFound(f"There is no complete model version {version!r}.")
        found = self._read(version)
        if isinstance(found, BrokenVersion):
            raise VersionBroken(f"Model version {version} is damaged ({found.problem}); it can be neither served "
                                "nor activated.")
        return found

    def _read(self, version):
        path = self.root / version
        try:
            card = ModelCard.from_dict(json.loads((path / CARD_FILE).read_text()))
        except FileNotFoundError:
            return BrokenVersion(path, "card.json is missing")
        except OSError as error:
            return BrokenVersion(path, f"card.json cannot be read ({error.strerror})")
        except ValueError:                        # not UTF-8 or not JSON
            return BrokenVersion(path, "card.json is not valid JSON")
        except CardError as error:
            return BrokenVersion(path, str(error))
        missing = [name for name in card.files if not (isinstance(name, str) and (path / name).is_file())]
        if not card.files or missing:
            return BrokenVersion(path, f"missing files: {', '.join(map(str, missing)) or 'none listed'}")
        return ModelVersion(path, card)

    def thresholds(self, version, card=None):
        """Return a version's abstention thresholds: an administrator's setting, else the trained ones.

        `card`, when the caller holds it already, saves reading the version's card again.
        """
        try:
            chosen = json.loads((self.root / version / THRESHOLDS_FILE).read_text())
            return check_thresholds(chosen)
        except FileNotFoundError:
            pass
        except (OSError, ValueError, CardError):
            log.warning("the administrator's thresholds of version %s are damaged; the trained ones apply", version)
        return (card or self.get(version).card).abstention

    def set_thresholds(self, version, min_probability, min_margin):
        """Store an administrator's abstention thresholds for a version (replaced atomically)."""
        found = self.get(version)
        for value in (min_probability, min_margin):
            if not 0 <= value <= 1:
                raise RegistryError("Thresholds are probabilities between 0 and 1.")
        staging = found.path / f".{THRESHOLDS_FILE}.{uuid.uuid4().hex}"
        _replace_durably(staging, found.path / THRESHOLDS_FILE,
                         json.dumps({"min_probability": min_probability, "min_margin": min_margin}))

    def pointer(self):
        """Return the content of active.json: {} when nothing was ever activated, {"damaged": why} if unreadable."""
        try:
            content = json.loads((self.root / ACTIVE_FILE).read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            content = None
        version = content.get("version") if isinstance(content, dict) else None
        history = content.get("history", []) if isinstance(content, dict) else None
        if not (isinstance(version, str) and isinstance(history, list) and all(isinstance(v, str) for v in history)):
            log.warning("%s is damaged; activating a version replaces it", self.root / ACTIVE_FILE)
            return {"damaged": "the record of the active version is damaged; activate a version to repair it"}
        return content

    def active(self):
        """Return the active ModelVersion; raise NoActiveModel, or VersionBroken if it is damaged."""
        pointer = self.pointer()
        if pointer.get("damaged"):
            raise NoActiveModel(f"No model can be served: {pointer['damaged']}.")
        if pointer.get("version") is None:
            raise NoActiveModel("No model is active yet. An administrator must train or activate one.")
        return self.get(pointer["version"])

    def activate(self, version, force=False):
        """Make `version` the active one; the previous one is remembered for roll-back.

        A version flagged as not useful (it does not clearly beat always answering the most
        frequent condition) is only activated with `force`. A damaged pointer is replaced.
        """
        found = self.get(version)
        usefulness = found.card.usefulness
        if not usefulness["useful"] and not force:
            raise NotUseful(f"Version {version} is {usefulness['note']}. Activate it only if you mean to, "
                            "with the explicit confirmation (force).")
        with self._pointer_lock():
            pointer = self.pointer()
            history = pointer.get("history", [])
            if pointer.get("version") and pointer["version"] != version:
                history = (history + [pointer["version"]])[-50:]
            self._write_pointer(version, history)

    def delete(self, version):
        """Remove a version that is not active, damaged ones too; raise VersionNotFound or VersionActive.

        The folder is renamed out of sight first, so the version disappears at once and whole; a
        roll-back skips a version that is gone.
        """
        if not (isinstance(version, str) and VERSION_PATTERN.fullmatch(version) and (self.root / version).is_dir()):
            raise VersionNotFound(f"There is no model version {version}.")
        with self._pointer_lock():
            if self.pointer().get("version") == version:
                raise VersionActive(f"Version {version} is the active one; activate another version first.")
            trash = self.root / f".delete-{version}-{uuid.uuid4().hex}"
            (self.root / version).rename(trash)
        shutil.rmtree(trash, ignore_errors=True)

    def rollback(self):
        """Re-activate the version that was active before the current one; return it."""
        with self._pointer_lock():
            history = list(self.pointer().get("history", []))
            while history:
                previous = history.pop()
                if VERSION_PATTERN.fullmatch(previous) and isinstance(self._read(previous), ModelVersion):
                    self._write_pointer(previous, history)
                    return previous
        raise RegistryError("There is no earlier active version to roll back to.")

    def _write_pointer(self, version, history):
        content = {"version": version, "activated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   "history": history}
        target = self.root / ACTIVE_FILE
        if target.is_dir() and not target.is_symlink():         # a file cannot replace a folder: move it aside
            aside = self.root / f".{ACTIVE_FILE}.damaged-{uuid.uuid4().hex}"
            target.rename(aside)
            log.warning("%s was a folder; moved aside to %s", target, aside.name)
        staging = self.root / f".{ACTIVE_FILE}.{uuid.uuid4().hex}"
        _replace_durably(staging, target, json.dumps(content, indent=1))
        _fsync(self.root)

    def _pointer_lock(self):
        """Serialise activations across threads and processes sharing this folder."""
        self.root.mkdir(parents=True, exist_ok=True)
        return exclusive_lock(self.root / ".active.lock")


def _replace_durably(staging, target, text):
    """Write `text` to `staging`, then put it in place of `target`; a failed write leaves no staging file."""
    try:
        _write_durably(staging, text)
        os.replace(staging, target)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise


def _write_durably(path, text):
    with open(path, "w") as stream:
        stream.write(text)
        stream.flush()
        os.fsync(stream.fileno())


def _fsync(path):
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
