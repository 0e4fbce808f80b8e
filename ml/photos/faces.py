"""Find the face in a photo and cut it out: the one crop used by import, training and prediction."""
import threading
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from ml.errors import FaceDxError, NoFaceFound
from ml.photos.face_gate import check_face, judge_face
from ml.photos.images import resize
from ml.photos.quality import refuse_unusable_light

CROP_SIZE = 256          # crops are stored at this size; backbones resize from it
DETECTORS = ("mtcnn", "haar")
FALLBACKS = ("none", "whole")
# MTCNN confidence under which a detected face is reported as doubtful: 1 in 100 of 295 real,
# clean face photos (children and adults) scored below it, 1 in 8 below the 0.97 used before.
UNSURE_BELOW = 0.91
MARGIN = 0.2             # extra context on each side of the detected box, as a share of its size
# A photo used whole (no face detected) must still be able to show a face: big enough for the
# 150 px aligned chip to hold real detail, and not blank.
MIN_WHOLE_SIDE = 48
MIN_CONTRAST = 4.0       # standard deviation of the grey levels, 0-255
# Detectors look for a face with some context around it; a photo that already is a tight
# face crop has none. When a photo shows no face as it is, it is searched again inside a grey
# border that gives that context back (see bench/face_detectors.py for the miss rates).
DETECTION_BORDERS = (0.0, 0.25)
# A phone photo of 12 megapixels takes MTCNN about 3 s on two CPU cores, one of 1024 pixels
# about 0.2 s: larger photos are searched shrunk to this longer side, and the face is still cut
# from the original pixels (see bench/large_photos.py).
DETECTION_MAX_SIDE = 1024


@dataclass(frozen=True)
class FaceBox:
    """Where the analysed face lies in the original photo, in pixels."""
    x: int
    y: int
    width: int
    height: int

    def as_dict(self):
        """Return the box as the JSON object the API documents."""
        return asdict(self)


@dataclass(frozen=True)
class FaceOptions:
    """How faces are found: which detector, and what to do when none is found."""
    detector: str = "mtcnn"
    fallback: str = "none"   # "whole": treat the whole photo as the face (already-cropped data)

    def __post_init__(self):
        if self.detector not in DETECTORS:
            raise FaceDxError(f"Unknown face detector {self.detector!r}; choose one of {', '.join(DETECTORS)}.")
        if self.fallback not in FALLBACKS:
            raise FaceDxError(f"Unknown face fallback {self.fallback!r}; choose one of {', '.join(FALLBACKS)}.")

    def as_dict(self):
        """Return the options as recorded in dataset.json and on the model card."""
        return asdict(self)


@dataclass(frozen=True)
class FaceCrop:
    """A square face image of CROP_SIZE pixels and where it came from."""
    image: np.ndarray
    box: FaceBox
    source: str              # "detected" or "whole-image"
    faces_found: int
    confidence: float | None = None     # the detector's confidence, where it gives one

    def retake_advice(self):
        """Return how to retake a photo that holds several faces (empty otherwise): which is the patient's is unsure."""
        if self.faces_found > 1:
            return [f"{self.faces_found} faces are in the photo and the largest was analysed; take the photo again "
                    "with only the patient's face in the frame."]
        return []

    def doubts(self):
        """Return the reasons to doubt this crop as the face of one patient that retaking cannot settle."""
        # A whole-image crop is not doubted here: the model's own face options asked for it, and
        # the result page says that no face was detected.
        if self.confidence is not None and self.confidence < UNSURE_BELOW:
            return [f"the face detector is unsure ({self.confidence:.0%})"]
        return []


def crop_face(rgb, options=FaceOptions()):
    """Return the largest face in `rgb` that passes the face gate as a FaceCrop, or raise NoFaceFound.

    Every crop a model reads passes the gate (ml/photos/face_gate.py), a detected face and a photo used
    whole alike: a detector's false alarm on a pattern is dropped like a photo of no face.
    """
    boxes = sorted(detect_faces(rgb, options.detector), key=lambda found: -found[0].width * found[0].height)
    faces, judgements = [], []
    for box, confidence in boxes:
        image = _square_crop(rgb, box, MARGIN)
        judgements.append(judge_face(image))
        if judgements[-1].passed:
            faces.append((image, box, confidence))
    if faces:
        image, box, confidence = faces[0]
        return FaceCrop(image, box, "detected", len(faces), confidence)
    if options.fallback == "whole":
        return whole_photo(rgb)
    if judgements:
        raise NoFaceFound(judgements[0].refusal())
    raise NoFaceFound("No face was found in the photo. Use a well-lit, frontal photo "
                      "in which the face fills a good part of the picture.")


def whole_photo(rgb):
    """Return the whole photo as the face crop (a photo that already is one), or raise NoFaceFound.

    A photo too dark or too bright to show anything is refused with that reason (UnusablePhoto)
    before the face gate, which would only say that it sees no face.
    """
    height, width = rgb.shape[:2]
    check_whole_photo(rgb)
    refuse_unusable_light(rgb)
    image = _square_crop(rgb, FaceBox(0, 0, width, height), 0.0)
    check_face(image)
    return FaceCrop(image, FaceBox(0, 0, width, height), "whole-image", 0)


def check_whole_photo(rgb):
    """Refuse, with the reason, a photo too small or too blank to be used whole as a face."""
    height, width = rgb.shape[:2]
    if min(height, width) < MIN_WHOLE_SIDE:
        raise NoFaceFound(f"No face was found, and the photo ({width} x {height} pixels) is too small to be a face "
                          f"photo: send one at least {MIN_WHOLE_SIDE} pixels on each side.")
    if float(np.std(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))) < MIN_CONTRAST:
        raise NoFaceFound("No face was found, and the photo is blank (nearly one colour): send a photo of the face.")


def load_face_networks(detector="mtcnn"):
    """Load the detector and the face gate now (each loads once per process), so no photo waits for them."""
    grey = np.full((64, 64, 3), 127, np.uint8)
    detect_faces(grey, detector, borders=(0.0,))
    judge_face(np.full((CROP_SIZE, CROP_SIZE, 3), 127, np.uint8))


def detect_faces(rgb, detector="mtcnn", borders=DETECTION_BORDERS, max_side=DETECTION_MAX_SIDE):
    """Return (FaceBox, confidence or None) for every face the detector finds, in the coordinates of `rgb`.

    Each entry of `borders` (a share of the longer side, added as a grey frame) is tried in
    turn until one finds a face. A photo whose longer side exceeds `max_side` (None: no limit)
    is searched shrunk to it.
    """
    height, width = rgb.shape[:2]
    scale = 1.0 if max_side is None else min(1.0, max_side / max(height, width))
    searched = rgb if scale == 1.0 else cv2.resize(
        rgb, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
    for border in borders:
        boxes = _detect_with_border(searched, _DETECTORS[detector], border)
        if boxes:
            return [(_unscaled(box, scale, width, height), confidence) for box, confidence in boxes]
    return []


def _unscaled(box, scale, width, height):
    """Return a box found in a photo shrunk by `scale` in the original photo's coordinates."""
    x0, y0 = round(box.x / scale), round(box.y / scale)
    x1, y1 = min(width, round((box.x + box.width) / scale)), min(height, round((box.y + box.height) / scale))
    return FaceBox(int(x0), int(y0), int(x1 - x0), int(y1 - y0))


def _detect_with_border(rgb, detect, border):
    height, width = rgb.shape[:2]
    border = int(round(border * max(height, width)))
    if border:
        rgb = cv2.copyMakeBorder(rgb, border, border, border, border, cv2.BORDER_CONSTANT,
                                 value=(127, 127, 127))
    boxes = []
    for (x, y, w, h), confidence in detect(rgb):
        x0, y0 = max(0, x - border), max(0, y - border)
        x1, y1 = min(width, x + w - border), min(height, y + h - border)
        if x1 - x0 >= 8 and y1 - y0 >= 8:
            boxes.append((FaceBox(int(x0), int(y0), int(x1 - x0), int(y1 - y0)), confidence))
    return boxes


def _square_crop(rgb, box, margin):
    """Cut a square around `box`, grown by `margin`, padding past the edges, resized to CROP_SIZE."""
    side = int(round(max(box.width, box.height) * (1 + 2 * margin)))
    cx, cy = box.x + box.width / 2, box.y + box.height / 2
    if margin == 0:
        side = min(box.width, box.height)   # whole image: centre square, no padding
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    height, width = rgb.shape[:2]
    pad = max(0, -x0, -y0, x0 + side - width, y0 + side - height)
    if pad:
        rgb = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0 = x0 + pad, y0 + pad
    return resize(np.ascontiguousarray(rgb[y0:y0 + side, x0:x0 + side]), CROP_SIZE)


def with_padding_shown(crop, colour=(216, 222, 230)):
    """Return a copy of a stored crop with the bands `_square_crop` filled past the photo's edges painted one colour.

    Padding repeats the photo's outermost row or column, which shows as streaks; painted flat, an
    administrator sees where the photo ended. A band is recognised as rows (or columns) all equal to
    the outermost one, which itself varies: an edge of one colour repeated shows no streak anyway.
    """
    shown = crop.copy()
    sides = (lambda a: a, lambda a: a[::-1], lambda a: a.transpose(1, 0, 2), lambda a: a.transpose(1, 0, 2)[::-1])
    for side in sides:
        lines = side(crop)
        if np.ptp(lines[0], axis=0).max() == 0:
            continue
        same = np.all(lines == lines[0], axis=(1, 2))
        band = len(same) if same.all() else int(np.argmin(same))
        if band >= 2:
            side(shown)[:band - 1] = colour
    return shown


class _Mtcnn:
    """The MTCNN detector, loaded once per process on first use."""

    def __init__(self):
        self._lock = threading.Lock()
        self._model = None

    def __call__(self, rgb):
        with self._lock:
            if self._model is None:
                from mtcnn import MTCNN
                self._model = MTCNN()
            faces = self._model.detect_faces(rgb, min_face_size=20)
        return [(tuple(int(v) for v in f["box"]), float(f["confidence"])) for f in faces if f["confidence"] >= 0.9]


class _Haar:
    """OpenCV's frontal-face Haar cascade: fast, and the baseline the others are measured against."""

    def __init__(self):
        self._local = threading.local()   # CascadeClassifier is not safe to share between threads

    def __call__(self, rgb):
        cascade = getattr(self._local, "cascade", None)
        if cascade is None:
            cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
            self._local.cascade = cascade
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        min_side = max(20, min(grey.shape) // 10)
        found = cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
        return [(tuple(int(v) for v in f), None) for f in found]


_DETECTORS = {"mtcnn": _Mtcnn(), "haar": _Haar()}
