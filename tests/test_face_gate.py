"""The face gate: real faces pass, whichever way they were cropped; pictures of anything else do not."""
import cv2
import numpy as np
import pytest

from bench.non_faces import non_faces
from ml.errors import NoFaceFound
from ml.photos.face_gate import MIN_FACE_SCORE, NO_FACE, check_face, judge_face, plausible_landmarks
from ml.photos.faces import FaceOptions, crop_face, whole_photo
from tests.helpers import coloured_face

NON_FACES = non_faces()


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_real_faces_pass_detected_and_used_whole(face_photos, name):
    detected = crop_face(face_photos[name])
    assert judge_face(detected.image).passed and judge_face(detected.image).score > 0.95
    box = detected.box
    tight = np.ascontiguousarray(face_photos[name][box.y:box.y + box.height, box.x:box.x + box.width])
    assert judge_face(whole_photo(tight).image).passed


def test_blurred_and_dark_faces_still_pass_so_that_quality_can_speak(face_photos):
    photo = face_photos["astronaut"]
    for changed in (cv2.GaussianBlur(photo, (0, 0), 4), (photo * 0.3).astype(np.uint8)):
        assert judge_face(crop_face(changed).image).passed


def centre_square(picture):
    """Return the middle square of a picture at 256 px, as a photo used whole is cropped."""
    height, width = picture.shape[:2]
    side = min(height, width)
    y0, x0 = (height - side) // 2, (width - side) // 2
    return cv2.resize(np.ascontiguousarray(picture[y0:y0 + side, x0:x0 + side]), (256, 256))


@pytest.mark.parametrize("name", sorted(NON_FACES))
def test_no_picture_of_the_gallery_passes(name):
    crop = centre_square(NON_FACES[name])
    judgement = judge_face(crop)
    assert not judgement.passed and judgement.score < MIN_FACE_SCORE
    with pytest.raises(NoFaceFound, match=NO_FACE[1:]):
        check_face(crop)


@pytest.mark.parametrize("options", [FaceOptions("mtcnn", "whole"), FaceOptions("haar", "whole"),
                                     FaceOptions("mtcnn", "none")])
def test_crop_face_refuses_a_coffee_cup_with_the_reason(options):
    with pytest.raises(NoFaceFound) as refused:
        crop_face(NON_FACES["coffee"], options)
    assert "no face" in str(refused.value).lower()


def test_a_detector_false_alarm_is_dropped_and_the_real_face_kept(face_photos):
    """Haar fires on some textures; the gate drops such boxes and the face still wins."""
    photo = np.ascontiguousarray(face_photos["grace_hopper"])
    canvas = np.concatenate([photo, cv2.resize(NON_FACES["brick"], photo.shape[1::-1])], axis=1)
    crop = crop_face(canvas, FaceOptions("haar"))
    assert crop.box.x < photo.shape[1] and judge_face(crop.image).passed


def test_tinted_test_faces_pass_the_gate():
    for label in ("alpha", "beta", "gamma"):
        assert all(judge_face(crop_face(coloured_face(label, seed), FaceOptions("haar", "whole")).image).passed
                   for seed in range(3))


def test_landmarks_out_of_place_are_implausible():
    face = np.array([[0.3, 0.35], [0.7, 0.35], [0.5, 0.55], [0.35, 0.75], [0.65, 0.75]])
    assert plausible_landmarks(face)
    assert not plausible_landmarks(face[::-1])                       # mouth above the eyes
    assert not plausible_landmarks(face * [1, 1] + [0.8, 0])          # beyond the window
    crossed = face.copy()
    crossed[[0, 1]] = crossed[[1, 0]]
    assert not plausible_landmarks(crossed)                           # the eyes swapped
