import cv2
import numpy as np
import pytest

from ml.errors import FaceDxError, NoFaceFound
from ml.photos.faces import CROP_SIZE, FaceOptions, crop_face, detect_faces
from tests.helpers import coloured_noise, face_haar_misses

# The astronaut's face in skimage.data.astronaut(): x 180-265, y 60-175.
ASTRONAUT_FACE = (180, 60, 265, 175)


def centre(box):
    return box.x + box.width / 2, box.y + box.height / 2


@pytest.mark.parametrize("detector", ["mtcnn", "haar"])
def test_finds_the_astronauts_face(face_photos, detector):
    crop = crop_face(face_photos["astronaut"], FaceOptions(detector))
    x, y = centre(crop.box)
    assert ASTRONAUT_FACE[0] < x < ASTRONAUT_FACE[2] and ASTRONAUT_FACE[1] < y < ASTRONAUT_FACE[3]
    assert crop.image.shape == (CROP_SIZE, CROP_SIZE, 3) and crop.source == "detected"


@pytest.mark.parametrize("detector", ["mtcnn", "haar"])
def test_finds_grace_hoppers_face(face_photos, detector):
    crop = crop_face(face_photos["grace_hopper"], FaceOptions(detector))
    x, y = centre(crop.box)
    photo = face_photos["grace_hopper"]
    assert 0.25 * photo.shape[1] < x < 0.75 * photo.shape[1] and y < 0.6 * photo.shape[0]


def test_a_photo_that_is_already_a_tight_face_crop_is_usable(face_photos):
    x0, y0, x1, y1 = ASTRONAUT_FACE
    tight = np.ascontiguousarray(face_photos["astronaut"][y0 + 15:y1 - 10, x0 + 5:x1 - 5])
    for detector in ("mtcnn", "haar"):
        assert crop_face(tight, FaceOptions(detector)).source == "detected"


@pytest.mark.parametrize("detector", ["mtcnn", "haar"])
def test_a_large_photo_is_searched_shrunk_and_cropped_from_its_own_pixels(face_photos, detector, monkeypatch):
    from ml.photos import faces
    searched = []
    original = faces._DETECTORS[detector]
    monkeypatch.setitem(faces._DETECTORS, detector, lambda rgb: searched.append(rgb.shape) or original(rgb))
    side = 3 * faces.DETECTION_MAX_SIDE                  # 3072 px: as large as a phone photo
    large = cv2.resize(face_photos["astronaut"], (side, side), interpolation=cv2.INTER_CUBIC)
    crop = crop_face(large, FaceOptions(detector))
    assert searched[0][:2] == (faces.DETECTION_MAX_SIDE, faces.DETECTION_MAX_SIDE)
    factor = side / face_photos["astronaut"].shape[0]
    x, y = centre(crop.box)                              # in the large photo's coordinates
    assert ASTRONAUT_FACE[0] * factor < x < ASTRONAUT_FACE[2] * factor
    assert ASTRONAUT_FACE[1] * factor < y < ASTRONAUT_FACE[3] * factor
    assert crop.box.width > 60 * factor                  # the face is ~85 px wide at 512 px
    small = crop_face(face_photos["astronaut"], FaceOptions(detector))
    assert abs(crop.box.width / factor - small.box.width) < 0.15 * small.box.width
    np.testing.assert_array_equal(crop.image, faces._square_crop(large, crop.box, faces.MARGIN))  # own pixels


def test_boxes_found_in_a_shrunk_photo_stay_inside_the_original():
    from ml.photos.faces import FaceBox, _unscaled
    box = _unscaled(FaceBox(900, 500, 124, 100), 1024 / 3000, 3000, 1700)
    assert box.x == round(900 * 3000 / 1024) and box.x + box.width <= 3000 and box.y + box.height <= 1700


def test_the_largest_face_is_chosen(face_photos):
    big = cv2.resize(face_photos["astronaut"], (400, 400))
    small = cv2.resize(face_photos["astronaut"], (200, 200))
    canvas = np.full((400, 600, 3), 255, np.uint8)
    canvas[:, 200:] = big
    canvas[100:300, :200] = small
    crop = crop_face(canvas, FaceOptions("mtcnn"))
    assert crop.faces_found >= 2
    assert centre(crop.box)[0] > 200 and crop.box.width > 50     # the small face is ~33 px wide


def test_no_face_is_its_own_outcome():
    noise = coloured_noise("alpha", seed=1, size=120)
    assert detect_faces(noise, "mtcnn") == []
    with pytest.raises(NoFaceFound, match="No face"):
        crop_face(noise, FaceOptions("mtcnn", "none"))


def test_whole_image_fallback_is_explicit_and_reported():
    photo = face_haar_misses("alpha", size=100, width=90)
    crop = crop_face(photo, FaceOptions("haar", "whole"))
    assert crop.source == "whole-image" and crop.faces_found == 0
    assert crop.box.as_dict() == {"x": 0, "y": 0, "width": 90, "height": 100}
    assert crop.image.shape == (CROP_SIZE, CROP_SIZE, 3)


def test_crop_near_the_edge_is_padded_not_shifted(face_photos):
    photo = face_photos["astronaut"][40:, 150:]                 # face close to the top-left corner
    crop = crop_face(np.ascontiguousarray(photo), FaceOptions("mtcnn"))
    assert crop.image.shape == (CROP_SIZE, CROP_SIZE, 3)


@pytest.mark.parametrize("options", [{"detector": "yolo"}, {"fallback": "centre"}])
def test_unknown_options_are_refused(options):
    with pytest.raises(FaceDxError, match="Unknown"):
        FaceOptions(**options)


def test_the_band_padded_past_the_photo_is_shown_flat_and_nothing_else_is_touched(face_photos):
    from ml.photos.faces import FaceBox, _square_crop, with_padding_shown

    photo = np.ascontiguousarray(face_photos["astronaut"][100:, 100:])      # 412 x 412, a box past its top-left
    padded = _square_crop(photo, FaceBox(20, 30, 100, 100), margin=0.4)      # 180 px square from (-20, -10)
    shown = with_padding_shown(padded)
    flat = np.all(shown == (216, 222, 230), axis=2)
    scale = CROP_SIZE / 180
    assert flat[:, :int(20 * scale) - 2].all() and flat[:int(10 * scale) - 2].all()      # left and top bands
    assert not flat[int(10 * scale) + 2:, int(20 * scale) + 2:].any()                     # the photo itself
    assert (shown[int(10 * scale) + 2:, int(20 * scale) + 2:] == padded[int(10 * scale) + 2:,
                                                                        int(20 * scale) + 2:]).all()
    inside = _square_crop(photo, FaceBox(150, 150, 100, 100), margin=0.4)
    assert (with_padding_shown(inside) == inside).all()                     # no padding: the crop as it is
    white_top = np.ascontiguousarray(photo.copy())
    white_top[:60] = 255                                                     # a plain edge repeated shows no streak
    plain = _square_crop(white_top, FaceBox(150, 20, 100, 100), margin=0.4)
    assert (with_padding_shown(plain)[:, CROP_SIZE // 2] == plain[:, CROP_SIZE // 2]).all()
