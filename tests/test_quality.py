import cv2
import numpy as np
import pytest

from ml.features.face_models import face_landmarks
from ml.photos.faces import FaceBox, FaceOptions, crop_face
from ml.photos.quality import (
    BLUR_BELOW,
    MIN_FACE_PX,
    TURNED_FROM,
    UnusablePhoto,
    face_pixels,
    head_turn,
    photo_advice,
    sharpness,
)

FACES = ("astronaut", "grace_hopper")


def advice_for(rgb):
    """Detect the face as a prediction does and return the advice on the photo."""
    crop = crop_face(rgb, FaceOptions("mtcnn"))
    return photo_advice(rgb, crop.box, face_landmarks(crop.image))


def darkened(rgb, factor):
    return np.round(rgb * factor).astype(np.uint8)


@pytest.mark.parametrize("name", FACES)
def test_a_good_photo_gets_no_advice(face_photos, name):
    assert advice_for(face_photos[name]) == []


@pytest.mark.parametrize("name", FACES)
def test_a_small_face_is_told_to_come_closer(face_photos, name):
    photo = face_photos[name]
    width = crop_face(photo, FaceOptions("mtcnn")).box.width
    small = cv2.resize(photo, None, fx=60 / width, fy=60 / width, interpolation=cv2.INTER_AREA)
    advice = advice_for(small)
    assert len(advice) == 1 and "px wide; move closer or use a higher-resolution photo" in advice[0]
    found = crop_face(small, FaceOptions("mtcnn")).box.width
    assert found < MIN_FACE_PX and f"only {found} px wide" in advice[0]


def test_a_face_too_small_to_analyse_is_refused(face_photos):
    photo = face_photos["grace_hopper"]
    box = crop_face(photo, FaceOptions("mtcnn")).box
    tiny = cv2.resize(photo, None, fx=24 / box.width, fy=24 / box.width, interpolation=cv2.INTER_AREA)
    scale = tiny.shape[1] / photo.shape[1]
    tiny_box = FaceBox(*(int(round(v * scale)) for v in (box.x, box.y, box.width, box.height)))
    with pytest.raises(UnusablePhoto, match="too small to analyse: move closer"):
        photo_advice(tiny, tiny_box)


@pytest.mark.parametrize("name", FACES)
def test_a_blurred_face_is_told_to_hold_still(face_photos, name):
    photo = face_photos[name]
    width = crop_face(photo, FaceOptions("mtcnn")).box.width
    assert advice_for(cv2.GaussianBlur(photo, (0, 0), 0.03 * width)) == [
        "The face is blurred; hold the camera still, let it focus on the face, and take the photo again."]


def test_sharpness_falls_as_blur_grows(face_photos):
    photo = face_photos["grace_hopper"]
    box = crop_face(photo, FaceOptions("mtcnn")).box
    values = [sharpness(face_pixels(cv2.GaussianBlur(photo, (0, 0), sigma) if sigma else photo, box))
              for sigma in (0, 1, 2, 4, 8)]
    assert values == sorted(values, reverse=True) and values[0] > BLUR_BELOW > values[-1]


@pytest.mark.parametrize("name", FACES)
def test_a_dark_photo_is_told_to_find_light(face_photos, name):
    assert advice_for(darkened(face_photos[name], 0.3)) == [
        "The face is too dark; take the photo again in brighter, even light facing the patient."]


@pytest.mark.parametrize("name", FACES)
def test_an_overexposed_photo_is_told_to_avoid_glare(face_photos, name):
    photo = face_photos[name]
    burnt = np.clip(photo * 2.5, 0, 255).astype(np.uint8)
    box = crop_face(photo, FaceOptions("mtcnn")).box
    assert photo_advice(burnt, box) == [
        "The face is too bright (overexposed); avoid direct sunlight or flash on the face."]


def test_a_nearly_black_photo_is_refused_with_the_advice(face_photos):
    photo = face_photos["astronaut"]
    box = crop_face(photo, FaceOptions("mtcnn")).box
    with pytest.raises(UnusablePhoto, match="nearly black.*take the photo again in good light"):
        photo_advice(darkened(photo, 0.05), box)


def test_a_turned_head_is_told_to_face_the_camera(face_photos):
    photo = face_photos["astronaut"]
    crop = crop_face(photo, FaceOptions("mtcnn"))
    points = face_landmarks(crop.image)
    assert head_turn(points) < 0.1
    # Turned to its side, the nose tip comes closer to one eye's outer corner than to the other's.
    turned = points.copy()
    turned[30] = points[30] + 0.6 * (points[36] - points[30])
    assert head_turn(turned) >= TURNED_FROM
    assert photo_advice(photo, crop.box, turned) == [
        "The head is turned to one side; ask the patient to look straight into the camera."]
    assert photo_advice(photo, crop.box, points) == []
