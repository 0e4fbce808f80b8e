"""The model held in memory by a server: thread-safe predictions, swapped when the active version changes."""
import logging
import os
import threading
from dataclasses import dataclass, field

import numpy as np

from ml.errors import FaceDxError, ImageError, NoActiveModel, VersionBroken
from ml.features.contract import Extractor
from ml.features.extractor import load_extractor
from ml.features.face_models import face_landmarks
from ml.learning.calibration import Thresholds, apply_temperature, decide
from ml.learning.heads import Head, load_head
from ml.learning.novelty import Novelty
from ml.photos.faces import CROP_SIZE, FaceBox, FaceOptions, crop_face
from ml.photos.images import decode_image
from ml.photos.quality import photo_advice
from ml.serving.batching import MicroBatcher
from ml.serving.explain import Explanation, explanation
from ml.versions.card import ModelCard
from ml.versions.gallery import CaseGallery, cases_summary
from ml.versions.registry import ACTIVE_FILE, THRESHOLDS_FILE

log = logging.getLogger(__name__)


UNCERTAIN = "uncertain - refer for clinical assessment"
UNLIKE_TRAINING = ("this photo is unlike the photos the model was trained on (another kind of photo, "
                   "an unusual face or poor image quality): the model cannot judge it")
UNLIKE_FACES = ("this face is unlike every group of faces the model was trained on (for example another age group "
                "or population): the model cannot judge it")
RETAKE = "the photo must be taken again before the model can judge it: "


def reasons_in_order(advice, unlike, doubts):
    """Return the reasons to refer that come before the model's own uncertainty, the real one first.

    A photo to retake comes first (blur or darkness also make a photo unlike the training
    photos, and retaking it is what the doctor can do), then a face unlike the training
    photos (`unlike`: the novelty reasons), then doubts about which face was analysed.
    """
    return [RETAKE + item[0].lower() + item[1:] for item in advice] + list(unlike) + doubts


@dataclass(frozen=True)
class Prediction:
    """Every class with its calibrated probability, highest first, for one face, and whether to abstain."""
    model_version: str
    face: FaceBox
    face_source: str
    probabilities: list          # [(label, probability)], sorted
    crop: np.ndarray             # the face that was analysed, CROP_SIZE square
    abstention_reasons: list = field(default_factory=list)
    explanation: Explanation | None = None
    advice: list = field(default_factory=list)     # how to retake the photo; empty for a good photo
    faces_found: int = 1         # faces in the photo (the largest, `face`, was analysed); 0: none detected
    nearest_cases: list = field(default_factory=list)     # NearestCase, most similar first; empty: no gallery
    cases_summary: list = field(default_factory=list)     # the sentences a doctor reads about them

    @property
    def abstained(self):
        return bool(self.abstention_reasons)

    @property
    def decision(self):
        """The label to show, or the uncertain message when the model abstains."""
        return UNCERTAIN if self.abstained else self.probabilities[0][0]

    def as_dict(self):
        """Return the prediction as the API's JSON object."""
        body = {"model_version": self.model_version, "face": self.face.as_dict(), "face_source": self.face_source,
                "predictions": [{"label": label, "probability": p} for label, p in self.probabilities],
                "decision": self.decision, "abstained": self.abstained,
                "abstention_reasons": self.abstention_reasons, "advice": self.advice,
                "faces_found": self.faces_found,
                "nearest_cases": [case.as_dict() for case in self.nearest_cases],
                "nearest_cases_summary": self.cases_summary}
        if self.explanation:
            body["explanation"] = self.explanation.as_dict()
        return body


@dataclass(frozen=True)
class LoadedModel:
    """A version in memory: its feature extractor, head, novelty score and case gallery, ready to predict."""
    version: str
    card: ModelCard
    backbone: Extractor
    head: Head
    novelty: Novelty | None = None
    gallery: CaseGallery | None = None

    def probabilities(self, crops, reference=None, calibrated=True):
        """Return (calibrated) class probabilities for a batch of face crops (uint8, CROP_SIZE squares)."""
        return self.assess(crops, reference, calibrated, cases=False)[0]

    def assess(self, crops, reference=None, calibrated=True, cases=True):
        """Return (probabilities, reasons each crop is unlike the training photos, its nearest cases) for a batch.

        With `cases` False (maps, which call it for many altered copies of one face) no case is looked up.
        """
        features = self.backbone.features(crops, reference=reference)
        raw = self.head.probabilities(features)
        unlike = [[] for _ in crops]
        if self.novelty is not None:
            for reason, flags in ((UNLIKE_FACES, self.novelty.unlike_faces(features)),
                                  (UNLIKE_TRAINING, self.novelty.unusual(features))):
                for reasons, flagged in zip(unlike, flags):
                    reasons += [reason] if flagged else []
        probabilities = apply_temperature(raw, self.card.calibration["temperature"]) if calibrated else raw
        nearest = (self.gallery.nearest(features, self.card.gallery["k"]) if cases and self.gallery is not None
                   else [[] for _ in crops])
        return probabilities, unlike, nearest


@dataclass(frozen=True)
class HeldThresholds:
    """A version's thresholds as a predictor holds them, and the stamp of the file they came from (None: the card)."""
    version: str
    stamp: tuple | None
    thresholds: Thresholds


def load_version(model_version):
    """Load a saved version's extractor, head and novelty score, and warm them up with one blank face.

    The landmarks behind the photo-quality advice are loaded too (once per process), so that the
    first doctor does not wait for them whatever the model's blocks are.
    """
    card, folder = model_version.card, model_version.path
    loaded = LoadedModel(model_version.version, card, load_extractor(card, folder), load_head(card, folder),
                         Novelty.load(folder), CaseGallery.load(folder) if card.gallery else None)
    blank = np.zeros((1, CROP_SIZE, CROP_SIZE, 3), np.uint8)
    loaded.probabilities(blank)
    face_landmarks(blank[0])
    return loaded


class Predictor:
    """Serve the active model; notice a new active version and swap to it without failing calls in flight."""

    def __init__(self, registry, max_pixels=40_000_000, batch_window_ms=5, max_batch=16, max_pending=64):
        self.registry = registry
        self.max_pixels = max_pixels
        # Concurrent requests share one backbone call; 0 ms turns batching off.
        self._batcher = MicroBatcher(lambda loaded, crops: list(zip(*loaded.assess(crops))), max_batch,
                                     batch_window_ms / 1000, max_pending) if batch_window_ms > 0 else None
        self._loaded = None
        self._unavailable = NoActiveModel("No model is active yet. An administrator must train or activate one.")
        self._pointer_stamp = None
        self._thresholds = None
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
            raise self._unavailable
        return self._loaded

    def _refresh(self, stamp):
        try:
            version = self.registry.active()
            if self._loaded is None or version.version != self._loaded.version:
                self._loaded = load_version(version)
                self.thresholds(self._loaded)
                log.info("serving model version %s", version.version)
        except NoActiveModel as error:
            self._loaded, self._unavailable = None, error
        except Exception as error:
            # Whatever is wrong with the new version, keep serving the loaded one: a broken
            # model folder must not take the service down. With none loaded, every route says why.
            log.error("cannot load the active model version: %s", error)
            reason = str(error) if isinstance(error, VersionBroken) else "The active model version cannot be loaded."
            self._unavailable = NoActiveModel(f"{reason} An administrator must activate another version.")
        self._pointer_stamp = stamp

    def _stamp(self):
        return file_stamp(self.registry.root / ACTIVE_FILE)

    def thresholds(self, loaded):
        """Return the Thresholds the predictions of `loaded` are held to.

        They are read with the version and again only when an administrator has saved new ones
        since (from any process): one stat of their file per prediction tells.
        """
        stamp = file_stamp(self.registry.root / loaded.version / THRESHOLDS_FILE)
        held = self._thresholds
        if held is None or (held.version, held.stamp) != (loaded.version, stamp):
            chosen = Thresholds.of(self.registry.thresholds(loaded.version, loaded.card))
            held = self._thresholds = HeldThresholds(loaded.version, stamp, chosen)
        return held.thresholds

    def predict(self, data, explain=False):
        """Decode photo bytes, crop the face and return a Prediction (with a heat map if `explain`)."""
        self.current()                   # no model: say so before spending time on the photo
        return self.predict_image(decode_image(data, self.max_pixels), explain)

    def predict_image(self, rgb, explain=False):
        """Return a Prediction for an RGB array, cropped exactly as in training.

        Raises NoFaceFound when no crop passes the face gate, and UnusablePhoto, with what to do
        instead, for a photo too poor to analyse.
        """
        loaded = self.current()
        crop = crop_face(rgb, FaceOptions(**loaded.card.face))
        # The head turn is judged from landmarks only on a detected face (a whole photo may be anything).
        landmarks = face_landmarks(crop.image) if crop.source == "detected" else None
        advice = crop.retake_advice() + photo_advice(rgb, crop.box, landmarks)      # which face first, then how
        if self._batcher is not None:
            probabilities, unlike, nearest = self._batcher.submit(loaded, crop.image)
        else:
            probabilities, unlike, nearest = (row[0] for row in loaded.assess(crop.image[np.newaxis]))
        ranked = sorted(zip(loaded.card.labels, map(float, probabilities)), key=lambda p: -p[1])
        reasons = decide(probabilities, self.thresholds(loaded), reasons_in_order(advice, unlike, crop.doubts()))
        explained = explanation(loaded, crop.image, int(np.argmax(probabilities))) if explain else None
        return Prediction(loaded.version, crop.box, crop.source, ranked, crop.image, reasons, explained,
                          advice=advice, faces_found=crop.faces_found, nearest_cases=nearest,
                          cases_summary=cases_summary(nearest, loaded.gallery))

    def explain_crop(self, crop, class_index=None):
        """Return the Explanation of `class_index` (default: the top class) for a face crop (CROP_SIZE, uint8 RGB).

        The crop is the one a Prediction holds; nothing is written anywhere.
        """
        loaded = self.current()
        crop = np.asarray(crop)
        if crop.dtype != np.uint8 or crop.shape != (CROP_SIZE, CROP_SIZE, 3):
            raise ImageError(f"A face crop must be a {CROP_SIZE} x {CROP_SIZE} RGB image; "
                             f"this one is {' x '.join(map(str, crop.shape))} ({crop.dtype}).")
        if class_index is not None and not 0 <= class_index < len(loaded.card.labels):
            raise FaceDxError(f"The model has {len(loaded.card.labels)} conditions; "
                              f"there is no condition number {class_index}.")
        return explanation(loaded, crop, class_index)


class VersionPredictor(Predictor):
    """The doctors' predictor, fixed on one version whatever the active one is: the same crop, model and checks."""

    def __init__(self, registry, loaded, max_pixels):
        super().__init__(registry, max_pixels, batch_window_ms=0)
        self.loaded = loaded

    def current(self):
        """Return the version this predictor was made for."""
        return self.loaded


def file_stamp(path):
    """Return what changes whenever a file is replaced (inode, modification time, size), or None if it is absent."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return info.st_ino, info.st_mtime_ns, info.st_size
