"""Face geometry: dlib's 68 landmarks, and a description of their shape that ignores position, size and tilt."""
import itertools
import os
import threading

import cv2
import numpy as np

from ml.errors import WeightsUnavailable
from ml.features.dlib_face import FACE_IN_CROP, import_dlib

_LEFT_EYE = slice(36, 42)       # the eye on the left of the photo (the person's right eye)
_RIGHT_EYE = slice(42, 48)
# Landmarks whose distances describe the proportions of a face (numbering of the iBUG 300-W scheme).
DISTANCE_POINTS = (
    36, 39, 42, 45,            # eye corners, outer and inner
    17, 21, 22, 26,            # brow ends
    27, 30, 31, 33, 35,        # nose: bridge top, tip, wings, base
    48, 51, 54, 57, 62, 66,    # mouth: corners, outer lips, inner lips (how open it is)
    0, 8, 16,                  # jaw: both ends and the chin
)
_PAIRS = np.array(list(itertools.combinations(range(len(DISTANCE_POINTS)), 2)))
GEOMETRY_SIZE = 68 * 2 + len(_PAIRS)


class Landmarks68:
    """dlib's 68-point shape predictor, loaded on first use; calls are serialised."""

    def __init__(self):
        dlib, files = import_dlib("Face geometry")
        self._dlib = dlib
        self._path = files.pose_predictor_model_location()
        self._predictor = None
        self._lock = threading.Lock()      # dlib's models are not documented as thread-safe

    def points(self, crop):
        """Return the 68 landmarks (x, y) of the face in the middle of a crop as a float32 array (68, 2)."""
        crop = np.ascontiguousarray(crop)
        # The predictor places the brows differently on a tilted face (at a 13 degree tilt, those of
        # skimage's astronaut moved by 11 px in a 256 px crop): predict, turn the crop so that the
        # eyes are level, predict again and turn the points back.
        height, width = crop.shape[:2]
        turn = cv2.getRotationMatrix2D((width / 2, height / 2), np.degrees(_eye_angle(self._predict(crop))), 1.0)
        level = cv2.warpAffine(crop, turn, (width, height), borderMode=cv2.BORDER_REPLICATE)
        back = cv2.invertAffineTransform(turn)
        return (self._predict(level) @ back[:, :2].T + back[:, 2]).astype(np.float32)

    def _predict(self, crop):
        low, high = (int(round(f * crop.shape[0])) for f in FACE_IN_CROP)
        with self._lock:
            if self._predictor is None:
                if not os.path.isfile(self._path):
                    raise WeightsUnavailable(f"dlib's 68-point landmark model is missing: {self._path}.")
                self._predictor = self._dlib.shape_predictor(self._path)
            shape = self._predictor(crop, self._dlib.rectangle(low, low, high, high))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def landmark_geometry(points):
    """Return the face's shape, free of translation, scale and in-plane rotation, as a float32 vector."""
    points = np.asarray(points, dtype=np.float64)
    return np.concatenate([_aligned_points(points).ravel(), _proportions(points)]).astype(np.float32)


def _aligned_points(points):
    """Return the points centred, scaled to unit RMS distance from their centroid, with the eyes level."""
    centred = points - points.mean(axis=0)
    centred /= np.sqrt((centred ** 2).sum(axis=1).mean())
    angle = _eye_angle(centred)
    cos, sin = np.cos(angle), np.sin(angle)
    return centred @ np.array([[cos, -sin], [sin, cos]])


def _eye_angle(points):
    """Return the angle (radians, y down) of the line from the left eye's centre to the right eye's."""
    dx, dy = points[_RIGHT_EYE].mean(axis=0) - points[_LEFT_EYE].mean(axis=0)
    return np.arctan2(dy, dx)


def _proportions(points):
    """Return the distances between all pairs of DISTANCE_POINTS, in units of the distance between the eyes."""
    chosen = points[list(DISTANCE_POINTS)]
    return np.linalg.norm(chosen[_PAIRS[:, 0]] - chosen[_PAIRS[:, 1]], axis=1) / inter_ocular(points)


def point_amounts(values):
    """Return how much of a per-value amount of landmark_geometry's layout falls on each of the 68 landmarks.

    A coordinate's amount falls on its landmark; a distance's is shared by its two ends.
    """
    values = np.asarray(values, np.float64)
    amounts = values[:136].reshape(68, 2).sum(axis=1)
    ends = np.asarray(DISTANCE_POINTS)[_PAIRS]
    np.add.at(amounts, ends[:, 0], values[136:] / 2)
    np.add.at(amounts, ends[:, 1], values[136:] / 2)
    return amounts


def inter_ocular(points):
    """Return the distance between the centres of the two eyes."""
    points = np.asarray(points, dtype=np.float64)
    return float(np.linalg.norm(points[_RIGHT_EYE].mean(axis=0) - points[_LEFT_EYE].mean(axis=0)))
