"""dlib's face-recognition ResNet: a 128-d descriptor of a face aligned on its 5 landmarks.

The network and the landmark model ship in the `face-recognition-models` package, so this
backbone works offline.
"""
import threading

import numpy as np

from ml.errors import WeightsUnavailable

CHIP_SIZE = 150           # the network's input: dlib's aligned face chip
CHIP_PADDING = 0.25       # dlib's default context around the landmarks
# crop_face() puts the detected box inside a margin of 20% on each side of a 256 px square.
FACE_IN_CROP = (0.2 / 1.4, 1.2 / 1.4)


def import_dlib(purpose):
    """Return (dlib, face_recognition_models), or raise WeightsUnavailable saying what `purpose` needs."""
    try:
        import dlib
        import face_recognition_models
    except ImportError as exc:
        raise WeightsUnavailable(f"{purpose} needs the dlib-bin and face-recognition-models packages "
                                 f"({exc}).") from None
    return dlib, face_recognition_models


class DlibFaceBackbone:
    """Face-recognition features: landmarks, alignment to a 150 px chip, ResNet descriptor (an Extractor).

    Versions from before blocks serve it; its maps occlude the crop, each occluded crop aligned anew.
    """
    name = "dlib-face"
    attributable, has_conv_maps, occludable = False, False, False
    feature_size = 128
    input_size = CHIP_SIZE

    def __init__(self):
        dlib, files = import_dlib("The dlib-face backbone")
        self._dlib, self._files = dlib, files
        self._landmarks = dlib.shape_predictor(files.pose_predictor_five_point_model_location())
        self._network = None    # dlib's own network: only versions from before feature blocks compute with it
        self._lock = threading.Lock()      # dlib's models are not documented as thread-safe

    cache_id = "dlib-face-resnet-v1"
    weights = None

    def describe(self):
        return {"name": self.name, "input_size": CHIP_SIZE, "feature_size": self.feature_size,
                "weights": {"name": "dlib_face_recognition_resnet_model_v1", "path": None, "sha256": None},
                "alignment": "dlib 5-point landmarks, face chip 150 px, padding 0.25"}

    def landmarks(self, crop):
        """Return dlib's 5 landmarks of the face in the middle of a crop."""
        low, high = (int(round(f * crop.shape[0])) for f in FACE_IN_CROP)
        with self._lock:
            return self._landmarks(crop, self._dlib.rectangle(low, low, high, high))

    def align(self, crop, shape=None):
        """Return the face in `crop` aligned on its 5 landmarks (or those of `shape`) as a 150 px chip."""
        crop = np.ascontiguousarray(crop)
        return self._dlib.get_face_chip(crop, shape or self.landmarks(crop), size=CHIP_SIZE, padding=CHIP_PADDING)

    def features(self, crops, reference=None):
        """Return the 128-d descriptor of each crop.

        With `reference`, every crop is aligned on the reference crop's landmarks (occlusion maps
        must not move the alignment).
        """
        shape = self.landmarks(np.ascontiguousarray(reference)) if reference is not None else None
        return self.descriptors([self.align(crop, shape) for crop in crops])

    def descriptors(self, chips, batch_size=8):
        """Return the 128-d descriptor of each aligned chip; small batches let other threads in between."""
        vectors = []
        for start in range(0, len(chips), batch_size):
            with self._lock:
                if self._network is None:
                    self._network = self._dlib.face_recognition_model_v1(self._files.face_recognition_model_location())
                batch = self._network.compute_face_descriptor(chips[start:start + batch_size])
            vectors.extend(np.asarray(v, dtype=np.float32) for v in batch)
        return np.stack(vectors) if vectors else np.zeros((0, self.feature_size), np.float32)

    def save(self, folder):
        return []          # the network ships in a package: nothing to copy

    @classmethod
    def load(cls, card, folder):
        return cls()
