"""The model held in memory by a server: thread-safe predictions, swapped when the active version changes."""
import logging
import os
import threading
from dataclasses import dataclass

import numpy as np

from ml.backbones import load_backbone
from ml.errors import NoActiveModel
from ml.faces import CROP_SIZE, FaceBox, FaceOptions, crop_face
from ml.heads import load_head
from ml.images import decode_image
from ml.registry import ACTIVE_FILE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """Every class with its probability, highest first, for one face."""
    model_version: str
    face: FaceBox
    face_source: str
    probabilities: list          # [(label, probability)], sorted
    crop: np.ndarray             # the face that was analysed, CROP_SIZE square

    def as_dict(self):
        """Return the prediction as the API's JSON object."""
        return {"model_version": self.model_version, "face": self.face.as_dict(),
                "face_source": self.face_source,
                "predictions": [{"label": label, "probability": p} for label, p in self.probabilities]}


@dataclass(frozen=True)
class LoadedModel:
    """An active version in memory: its backbone and head, ready to predict."""
    version: str
    card: dict
    backbone: object
    head: object

    def probabilities(self, crops):
        """Return class probabilities for a batch of face crops (uint8, CROP_SIZE squares)."""
        return self.head.probabilities(self.backbone.features(crops))


def load_version(model_version):
    """Load a saved version's backbone and head, and warm both up with one blank face."""
    card = model_version.card
    loaded = LoadedModel(model_version.version, card, load_backbone(card, model_version.path),
                         load_head(card, model_version.path))
    loaded.probabilities(np.zeros((1, CROP_SIZE, CROP_SIZE, 3), np.uint8))
    return loaded


class Predictor:
    """Serve the active model; notice a new active version and swap to it without failing calls in flight."""

    def __init__(self, registry, max_pixels=40_000_000):
        self.registry = registry
        self.max_pixels = max_pixels
        self._loaded = None
        self._pointer_stamp = None
        self._lock = threading.Lock()

    def current(self):
        """Return the LoadedModel for the active version, loading it first if the pointer changed."""
        stamp = self._stamp()
        if stamp == self._pointer_stamp and self._loaded is not None:
            return self._loaded
        # Requests that see a new pointer wait for the new version (one thread loads it); calls
        # already running keep the LoadedModel they hold, so nothing in flight fails.
        with self._lock:
            if stamp != self._pointer_stamp or self._loaded is None:
                self._refresh(stamp)
        if self._loaded is None:
            raise NoActiveModel("No model is active yet. An administrator must train or activate one.")
        return self._loaded

    def _refresh(self, stamp):
        try:
            version = self.registry.active()
            if self._loaded is None or version.version != self._loaded.version:
                self._loaded = load_version(version)
                log.info("serving model version %s", version.version)
        except NoActiveModel:
            self._loaded = None
        except Exception as exc:
            # Whatever is wrong with the new version, keep serving the loaded one: a broken
            # model folder must not take the service down.
            log.error("cannot load the active model version: %s", exc)
        self._pointer_stamp = stamp

    def _stamp(self):
        try:
            info = os.stat(self.registry.root / ACTIVE_FILE)
        except FileNotFoundError:
            return None
        return info.st_ino, info.st_mtime_ns, info.st_size

    def predict(self, data):
        """Decode photo bytes, crop the face and return a Prediction."""
        return self.predict_image(decode_image(data, self.max_pixels))

    def predict_image(self, rgb):
        """Return a Prediction for an RGB array, cropped and resized exactly as in training."""
        loaded = self.current()
        crop = crop_face(rgb, FaceOptions(**loaded.card["face"]))
        probabilities = loaded.probabilities(crop.image[np.newaxis])[0]
        ranked = sorted(zip(loaded.card["labels"], map(float, probabilities)), key=lambda p: -p[1])
        return Prediction(loaded.version, crop.box, crop.source, ranked, crop.image)
