import sys

import cv2
import numpy as np
import pytest

from ml.errors import WeightsUnavailable
from ml.features.dlib_face import DlibFaceBackbone
from ml.features.extractor import FaceFeatures
from ml.features.geometry import GEOMETRY_SIZE, Landmarks68, landmark_geometry
from ml.features.lbp import LBP_BINS, lbp_codes, lbp_histograms
from ml.photos.faces import crop_face

# Relative L2 difference allowed between the geometry of one photo and of its scaled or rotated
# copies (measured: at most 0.02 for the astronaut); two different people differ by about 0.07.
GEOMETRY_TOLERANCE = 0.04


@pytest.fixture(scope="module")
def landmarks68():
    return Landmarks68()


def relative_difference(vector, reference):
    return float(np.linalg.norm(vector - reference) / np.linalg.norm(reference))


def scaled(rgb, factor):
    return cv2.resize(rgb, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC)


def rotated(rgb, degrees):
    height, width = rgb.shape[:2]
    turn = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
    return cv2.warpAffine(rgb, turn, (width, height), borderMode=cv2.BORDER_REPLICATE)


def test_a_flat_image_has_every_cell_in_the_bin_of_code_255():
    grey = np.full((60, 60), 90, np.uint8)
    assert (lbp_codes(grey) == 255).all()          # a neighbour equal to the centre sets its bit
    cells = lbp_histograms(grey, grid=5).reshape(25, LBP_BINS)
    # Uniform codes take the bins in increasing order, so 255 takes the last uniform bin.
    assert (cells[:, LBP_BINS - 2] == 1).all() and cells.sum() == 25


@pytest.mark.parametrize("grid, side", [(7, 150), (4, 12), (3, 50)])
def test_lbp_gives_one_hellinger_normalised_histogram_per_cell(grid, side):
    grey = np.random.default_rng(side).integers(0, 256, (side, side), dtype=np.uint8)
    vector = lbp_histograms(grey, grid)
    assert vector.shape == (grid * grid * LBP_BINS,) and vector.dtype == np.float32
    np.testing.assert_allclose((vector.reshape(grid * grid, LBP_BINS) ** 2).sum(axis=1), 1, rtol=1e-5)


def test_a_mirrored_texture_gives_other_histograms():
    grey = cv2.GaussianBlur(np.random.default_rng(3).integers(0, 256, (150, 150), dtype=np.uint8), (3, 3), 0)
    assert not np.allclose(lbp_histograms(grey), lbp_histograms(np.ascontiguousarray(grey[:, ::-1])))


def test_lbp_of_a_real_aligned_face(face_photos):
    chip = DlibFaceBackbone().align(crop_face(face_photos["astronaut"]).image)
    vector = lbp_histograms(cv2.cvtColor(chip, cv2.COLOR_RGB2GRAY))
    assert vector.shape == (7 * 7 * LBP_BINS,) and np.isfinite(vector).all()


def test_landmarks_without_dlib_say_which_packages_are_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)
    with pytest.raises(WeightsUnavailable, match="dlib-bin and face-recognition-models"):
        Landmarks68()


def test_geometry_ignores_position_size_and_rotation_exactly():
    rng = np.random.default_rng(7)
    points = rng.uniform(0, 256, (68, 2))
    for _ in range(5):
        angle, scale, shift = rng.uniform(-np.pi, np.pi), rng.uniform(0.3, 3), rng.uniform(-500, 500, 2)
        turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        moved = scale * points @ turn.T + shift
        np.testing.assert_allclose(landmark_geometry(moved), landmark_geometry(points), rtol=1e-5, atol=1e-5)
    assert landmark_geometry(points).shape == (GEOMETRY_SIZE,)


def test_geometry_of_a_real_face_survives_scaling_and_rotation(face_photos, landmarks68):
    def geometry(rgb):
        points = landmarks68.points(crop_face(rgb).image)
        assert points.shape == (68, 2) and points.dtype == np.float32
        return landmark_geometry(points)

    astronaut = face_photos["astronaut"]
    original = geometry(astronaut)
    assert original.shape == (GEOMETRY_SIZE,) and original.dtype == np.float32
    for changed in (scaled(astronaut, 0.7), scaled(astronaut, 1.3), rotated(astronaut, 10), rotated(astronaut, -10)):
        assert relative_difference(geometry(changed), original) < GEOMETRY_TOLERANCE
    assert relative_difference(geometry(face_photos["grace_hopper"]), original) > 1.5 * GEOMETRY_TOLERANCE


def test_the_descriptor_block_gives_dlibs_descriptors_of_the_chip_and_its_mirror(face_photos):
    crops = np.stack([crop_face(face_photos[name]).image for name in ("astronaut", "grace_hopper")])
    extractor = FaceFeatures(["dlib-face", "hog"])
    descriptor, _ = extractor.block_features(crops)
    chips = [face.chip for face in extractor.align(crops)]
    reference = DlibFaceBackbone()       # dlib-bin's own network, as versions before the Keras one computed it
    expected = (reference.descriptors(chips) + reference.descriptors([np.ascontiguousarray(c[:, ::-1])
                                                                     for c in chips])) / 2
    assert descriptor.shape == (2, 128) and np.abs(descriptor - expected).max() < 1e-4
