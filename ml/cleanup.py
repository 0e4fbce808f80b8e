"""Remove what an interrupted import, upload or training left behind in the data folder."""
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ml.datasets.store import STAGING_PREFIX, TRASH_PREFIX
from ml.versions.registry import ACTIVE_FILE, THRESHOLDS_FILE

log = logging.getLogger(__name__)

# Names that exist only while something is being written, relative to the data folder (FACEDX_DATA_DIR),
# and who writes them: an import job (its archive, its staging folder), any job, or a web request.
LEFTOVERS = (
    ("uploads/tmp/*", "archive"),                                # an uploaded archive while it is imported
    (f"uploads/datasets/{STAGING_PREFIX}*", "staging"),          # a dataset being imported
    (f"uploads/datasets/{TRASH_PREFIX}*", "request"),            # a dataset being deleted
    ("uploads/datasets/*/features/*/*.tmp.npy", "job"),          # a cached feature vector being written
    ("models/.tmp-*", "job"),                                    # a model version being saved
    (f"models/.{ACTIVE_FILE}.*", "request"),                     # the active pointer being replaced
    ("models/.delete-*", "request"),                             # a version being deleted
    (f"models/*/.{THRESHOLDS_FILE}.*", "request"),               # a version's abstention thresholds being replaced
)
# At start-up, what no live job owns goes once nothing changed it for this long: an upload or a
# command-line import (which runs without a job) writes its files every moment while it lives.
GRACE_S = 60


@dataclass(frozen=True)
class LiveJobs:
    """What the jobs still running (their heartbeat is fresh) are writing."""
    archives: set = field(default_factory=set)        # names of the archives live imports read
    datasets: set = field(default_factory=set)        # names of the datasets live imports write
    any: bool = False                                  # whether any job lives (trainings write features, versions)

    def own(self, path, kind):
        """Say whether a leftover of `kind` may belong to one of these jobs."""
        if kind == "archive":
            return path.name in self.archives
        if kind == "staging":
            return any(path.name.startswith(f"{STAGING_PREFIX}{name}-") for name in self.datasets)
        return kind == "job" and self.any


def remove_stale(root, older_than, live=None):
    """Remove the leftovers under data folder `root`; return them.

    Without `live`, those that nothing changed for `older_than` seconds. With `live` (the jobs
    that are still running, known at start-up), also at once those no live job owns that nothing
    changed for GRACE_S.
    """
    root = Path(root)
    now = time.time()
    removed = []
    for pattern, kind in LEFTOVERS:
        for path in sorted(root.glob(pattern)):
            quiet_for = older_than if live is None or live.own(path, kind) else min(GRACE_S, older_than)
            try:
                if _last_change(path) >= now - quiet_for:
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
