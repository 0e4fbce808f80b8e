"""Remove what an interrupted import, upload or training left behind in the data folder."""
import logging
import os
import shutil
import time
from pathlib import Path

from ml.datasets import STAGING_PREFIX, TRASH_PREFIX
from ml.registry import ACTIVE_FILE, THRESHOLDS_FILE

log = logging.getLogger(__name__)

# Names that exist only while something is being written, relative to the data folder (FACEDX_DATA_DIR).
LEFTOVERS = (
    "uploads/tmp/*",                                   # an uploaded archive while it is imported
    f"uploads/datasets/{STAGING_PREFIX}*",             # a dataset being imported
    f"uploads/datasets/{TRASH_PREFIX}*",               # a dataset being deleted
    "uploads/datasets/*/features/*/*.tmp.npy",         # a cached feature vector being written
    "models/.tmp-*",                                   # a model version being saved
    f"models/.{ACTIVE_FILE}.*",                        # the active pointer being replaced
    f"models/*/.{THRESHOLDS_FILE}.*",                  # a version's abstention thresholds being replaced
)


def remove_stale(root, older_than):
    """Remove the leftovers under data folder `root` that nothing changed for `older_than` seconds; return them."""
    root = Path(root)
    before = time.time() - older_than
    removed = []
    for pattern in LEFTOVERS:
        for path in sorted(root.glob(pattern)):
            try:
                if _last_change(path) >= before:
                    continue                   # still being written, or not long enough ago to be sure
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            except FileNotFoundError:
                continue                       # its writer finished (or removed it) meanwhile
            except OSError as exc:
                log.warning("Could not remove the leftover %s: %s", path, exc)
                continue
            log.warning("Removed %s, left behind by an interrupted import, upload or training.", path)
            removed.append(path)
    return removed


def _last_change(path):
    """Return when a file, or a folder or anything in it, was last modified (seconds since the epoch)."""
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for folder, _, files in os.walk(path):
            for name in [folder, *(os.path.join(folder, file) for file in files)]:
                try:
                    newest = max(newest, os.lstat(name).st_mtime)
                except FileNotFoundError:
                    pass
    return newest
