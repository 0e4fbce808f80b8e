"""The model held in memory by a server: thread-safe predictions, swapped when the active version changes."""
import logging
import os
import threading
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

import ml.backbones  # noqa: F401  (registers the custom layers the saved models use)
from ml.errors import NoActiveModel
from ml.faces import FaceBox, FaceOptions, crop_face
from ml.images import decode_image, resize
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
    """An active version in memory with its compiled inference function."""
    version: str
    card: dict
    infer: object

    @property
    def image_size(self):
        return self.card["image_size"]

    def probabilities(self, pixels):
        """Return class probabilities for a batch of RGB images at the model's size."""
        return self.infer(tf.constant(pixels, dtype=tf.float32)).numpy()


def load_version(model_version):
    """Load a saved version, compile its fast path and warm it up."""
    model = keras.saving.load_model(model_version.model_path, compile=False)
    size = model_version.card["image_size"]
    infer = tf.function(lambda x: model(x, training=False), reduce_retracing=True,
                        input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
    loaded = LoadedModel(model_version.version, model_version.card, infer)
    loaded.probabilities(np.zeros((1, size, size, 3), np.float32))
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
        pixels = resize(crop.image, loaded.image_size)[np.newaxis]
        probabilities = loaded.probabilities(pixels)[0]
        ranked = sorted(zip(loaded.card["labels"], map(float, probabilities)), key=lambda p: -p[1])
        return Prediction(loaded.version, crop.box, crop.source, ranked, crop.image)
