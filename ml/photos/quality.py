"""Is a face photo good enough to analyse? Specific advice on how to retake it, or a refusal when it is unusable.

Thresholds were measured on 295 real face photos (UTKFace, 200 px, faces 131-195 px wide) and
on copies of them made worse:
- sharpness: the variance of the Laplacian of the face at FACE_SIDE px. Real photos: 1st
  percentile 9.3, median 57; blurred with a Gaussian of 1%, 2%, 3% of the face's width: medians
  16, 6.5, 4.1. Under BLUR_BELOW: 2.4% of the real photos (the lowest ones are visibly soft,
  upscaled photos), 25%, 97% and 100% of the blurred ones.
- light: percentiles of the face's luminance (0-255). The brightest 5% of a face (its 95th
  percentile) was at least 109 in every real photo, dark skin included, so a face is called dark
  from that and not from its mean. Pixels at 250 or more (burnt out) were at most 14% of a face
  (99th percentile 6%); the same faces at 1.5 to 2.5 times their exposure had 12% to 82%.
- head turn: the asymmetry of the nose tip's distances to the outer eye corners (68 landmarks),
  0 for a frontal face; the real photos: median 0.1, 99th percentile 0.4; the 2% above TURNED_FROM
  are visibly three-quarter views.
"""
import cv2
import numpy as np

from ml.errors import ImageError

MIN_FACE_PX = 80           # advice under this width
UNUSABLE_FACE_PX = 32      # refusal under this width: too few pixels to hold a face's detail
FACE_SIDE = 128            # sharpness is measured on the face resized to this width
BLUR_BELOW = 12.0
DARK_BELOW = 80            # the face's 95th luminance percentile
BLACK_BELOW = 20           # ... nearly black: nothing to analyse
BURNT_FROM = 250           # luminance of a burnt-out (overexposed) pixel
BRIGHT_ABOVE = 0.25        # share of burnt-out pixels in the face
WHITE_ABOVE = 245          # the face's 5th luminance percentile: nearly white, nothing to analyse
TURNED_FROM = 0.35
_NOSE_TIP, _OUTER_EYE_CORNERS = 30, (36, 45)


class UnusablePhoto(ImageError):
    """A photo too poor to analyse; its message says how to take a usable one."""


def photo_advice(rgb, box, points=None):
    """Return retake advice for the face in `box` of an RGB photo (empty for a good photo); raise UnusablePhoto.

    `points`: the face's 68 landmarks (any coordinates), or None where there are none (no face
    detected) and the head turn cannot be judged.
    """
    face = face_pixels(rgb, box)
    if box.width < UNUSABLE_FACE_PX:
        raise UnusablePhoto(f"The face is only {box.width} px wide, too small to analyse: move closer or use a "
                            f"higher-resolution photo, with the face at least {MIN_FACE_PX} px wide.")
    _, brightest, burnt = refuse_unusable_light(face)
    advice = []
    if box.width < MIN_FACE_PX:
        advice.append(f"The face is only {box.width} px wide; move closer or use a higher-resolution photo "
                      f"(at least {MIN_FACE_PX} px across the face).")
    if sharpness(face) < BLUR_BELOW:
        advice.append("The face is blurred; hold the camera still, let it focus on the face, and take the photo again.")
    if brightest < DARK_BELOW:
        advice.append("The face is too dark; take the photo again in brighter, even light facing the patient.")
    if burnt > BRIGHT_ABOVE:
        advice.append("The face is too bright (overexposed); avoid direct sunlight or flash on the face.")
    if points is not None and head_turn(points) >= TURNED_FROM:
        advice.append("The head is turned to one side; ask the patient to look straight into the camera.")
    return advice


def refuse_unusable_light(face):
    """Raise UnusablePhoto for a face nearly black or nearly white; else return light(face)."""
    darkest, brightest, burnt = light(face)
    if brightest < BLACK_BELOW:
        raise UnusablePhoto("The face is nearly black, so it cannot be analysed: take the photo again in good light.")
    if darkest > WHITE_ABOVE:
        raise UnusablePhoto("The face is nearly white (overexposed), so it cannot be analysed: take the photo again "
                            "without direct sunlight or flash on the face.")
    return darkest, brightest, burnt


def face_pixels(rgb, box):
    """Return the part of the photo inside the face box (clipped to the photo)."""
    height, width = rgb.shape[:2]
    x0, y0 = max(0, box.x), max(0, box.y)
    return rgb[y0:min(height, box.y + box.height), x0:min(width, box.x + box.width)]


def sharpness(face):
    """Return the variance of the Laplacian of the face at FACE_SIDE px wide: low for a blurred face."""
    grey = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)
    height, width = grey.shape
    shrinking = width > FACE_SIDE
    grey = cv2.resize(grey, (FACE_SIDE, max(1, round(height * FACE_SIDE / width))),
                      interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def light(face):
    """Return the 5th and 95th percentiles of the face's luminance (0-255), and the share of it burnt out."""
    grey = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)
    darkest, brightest = np.percentile(grey, (5, 95))
    return float(darkest), float(brightest), float(np.mean(grey >= BURNT_FROM))


def head_turn(points):
    """Return how far the head is turned sideways, from 68 landmarks: 0 for a frontal face, more the more it turns."""
    points = np.asarray(points, dtype=np.float64)
    left, right = (np.linalg.norm(points[_NOSE_TIP] - points[corner]) for corner in _OUTER_EYE_CORNERS)
    return float(abs(left - right) / (left + right))
