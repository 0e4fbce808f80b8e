"""Model versions tried on a photo before they are activated: loaded apart from the one doctors are served."""
import threading
from collections import OrderedDict

from flask import current_app

from web.services import get_registry

KEPT_LOADED = 2         # versions kept in memory for trying; each holds its own network


class TriedVersions:
    """The last few versions tried, loaded once each; the least recently tried is let go first."""

    def __init__(self, kept=KEPT_LOADED):
        self.kept, self.predictors, self.lock = kept, OrderedDict(), threading.Lock()

    def predictor(self, version, registry, max_pixels):
        """Return the VersionPredictor of a ModelVersion, loading it unless it was tried lately."""
        with self.lock:             # one load at a time: a second request for it waits and reuses it
            found = self.predictors.pop(version.version, None)
            if found is None:
                from ml.serving.predictor import VersionPredictor, load_version  # TensorFlow: only when tried
                found = VersionPredictor(registry, load_version(version), max_pixels)
            self.predictors[version.version] = found
            while len(self.predictors) > self.kept:
                self.predictors.popitem(last=False)
            return found


def version_predictor(version):
    """Return a predictor for `version` (a ModelVersion) that leaves the served model untouched."""
    tried = current_app.extensions.setdefault("facedx.tried_versions", TriedVersions())
    return tried.predictor(version, get_registry(), current_app.config["MAX_IMAGE_PIXELS"])
