"""The face gate: is a crop a human face at all, whichever model will read it?

A classifier answers every picture it is given, a coffee cup included; the gate does not ask
the classifier. It asks MTCNN's last stage (O-Net, trained on faces against everything else)
to judge the crop itself, in a few 48 px windows (the whole crop, and the middle where a
detected face lies inside its margin), and checks that the five points O-Net places fall where
a face's eyes, nose and mouth are. It serves detected faces and whole photos alike, so a photo
used whole because no face was detected cannot slip past it.

Measured (python -m bench.refusal): on 300 real face photos (UTKFace, babies to adults, tight
crops, as the import crops them and used whole) the best window scored 0.989 at the lowest and
0.995 or more for 99 in 100; on the 49 non-faces of bench/non_faces.py (scikit-image's photos and
textures, faceless crops of the astronaut photo, checkerboards, stripes, gradients, noise and
blobs at 48-512 px) the highest scored 0.50 (a colour wheel), most under 0.05. The astronaut's face
blurred (a Gaussian of 4 px on the 512 px photo) or at 30% of its light still scores over 0.97:
the photo-quality advice, not the gate, speaks for such photos.
MIN_FACE_SCORE sits between the two groups, well below every real face.
"""
import threading
from dataclasses import dataclass

import cv2
import numpy as np

from ml.errors import NoFaceFound

# (side as a share of the crop's, downward shift as a share of the crop's side): the whole crop,
# and the middle, where a detected face lies inside crop_face's margin of 20% on each side.
WINDOWS = ((1.0, 0.0), (0.85, 0.03), (0.71, 0.02))
WINDOW_PX = 48                  # O-Net's input
MIN_FACE_SCORE = 0.8
NO_FACE = "no face found in this photo"


@dataclass(frozen=True)
class FaceJudgement:
    """The gate's verdict on one crop: O-Net's face probability and whether its landmarks sit like a face's."""
    score: float
    plausible: bool

    @property
    def passed(self):
        return self.score >= MIN_FACE_SCORE and self.plausible

    def refusal(self):
        """Return the message that refuses this crop, saying what to do instead."""
        why = (f"it does not look like a human face (face score {self.score:.0%}; a face needs "
               f"{MIN_FACE_SCORE:.0%})" if self.score < MIN_FACE_SCORE else
               "the eyes, nose and mouth are not where a face's would be")
        return (f"{NO_FACE[0].upper()}{NO_FACE[1:]}: {why}. Take a well-lit, frontal photo of the patient's face, "
                "with the face filling a good part of the picture.")


def judge_face(crop):
    """Return the FaceJudgement of a square RGB crop (uint8): its best window's score and landmark check."""
    scores, points = _ONET(_windows(np.asarray(crop)))
    best = int(np.argmax(scores))
    return FaceJudgement(float(scores[best]), plausible_landmarks(points[best]))


def check_face(crop):
    """Raise NoFaceFound, with the reason, unless the crop passes the face gate."""
    judgement = judge_face(crop)
    if not judgement.passed:
        raise NoFaceFound(judgement.refusal())
    return judgement


def plausible_landmarks(points):
    """Say whether O-Net's five points (x, y in 0..1 of the window: eyes, nose, mouth corners) look like a face's.

    Loose on purpose: a turned or tilted head passes; a pattern whose "eyes" sit below its
    "mouth", cross over, or lie outside the window does not.
    """
    (left_eye, right_eye, nose, mouth_left, mouth_right) = np.asarray(points, np.float64)
    inside = bool(np.all((points > -0.1) & (points < 1.1)))
    eye_gap = right_eye[0] - left_eye[0]
    eyes_y = max(left_eye[1], right_eye[1])
    return bool(inside and 0.1 <= eye_gap <= 0.8 and mouth_right[0] > mouth_left[0]
            and min(mouth_left[1], mouth_right[1]) > eyes_y and nose[1] > min(left_eye[1], right_eye[1]))


def _windows(crop):
    side = crop.shape[0]
    out = []
    for share, shift in WINDOWS:
        size = int(round(side * share))
        x0, y0 = (side - size) // 2, min(side - size, (side - size) // 2 + int(round(shift * side)))
        out.append(cv2.resize(crop[y0:y0 + size, x0:x0 + size], (WINDOW_PX, WINDOW_PX), interpolation=cv2.INTER_AREA))
    return np.stack(out)


class _ONet:
    """MTCNN's O-Net with the weights its package ships, loaded once per process on first use."""

    def __init__(self):
        self._lock = threading.Lock()
        self._model = None

    def __call__(self, windows):
        """Return (face probability [n], five (x, y) points [n, 5, 2]) for 48 px RGB windows."""
        with self._lock:
            if self._model is None:
                import tensorflow as tf
                from mtcnn.network.onet import ONet
                from mtcnn.utils.tensorflow import load_weights

                model = ONet()
                model.build()
                model.set_weights(load_weights("onet.lz4"))
                # One traced graph: about 4 ms for the three windows instead of 20 ms called eagerly.
                self._model = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        _, points, scores = self._model((windows.astype(np.float32) - 127.5) / 128)
        points = np.asarray(points)
        return np.asarray(scores)[:, 1], np.stack([points[:, :5], points[:, 5:]], axis=-1)


_ONET = _ONet()
