import matplotlib.cbook
import numpy as np
import pytest
import skimage.data
from PIL import Image

from ml.features import dlib_resnet
from ml.features.dlib_format import DlibFormatError, default_dat_path
from ml.features.dlib_resnet import DlibResnet


@pytest.fixture(scope="module")
def chips():
    """Return dlib's chips of the astronaut and Grace Hopper, then their mirror images."""
    dlib = pytest.importorskip("dlib")
    import face_recognition_models
    detector = dlib.get_frontal_face_detector()
    landmarks = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
    hopper_file = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    photos = [skimage.data.astronaut(), np.asarray(Image.open(hopper_file).convert("RGB"))]
    faces = []
    for photo in photos:
        box = detector(photo, 1)[0]
        faces.append(dlib.get_face_chip(photo, landmarks(photo, box), size=150, padding=0.25))
    return faces + [np.ascontiguousarray(face[:, ::-1]) for face in faces]


def test_descriptors_equal_dlibs_on_real_chips_and_their_mirrors(chips):
    """The Keras network gives dlib's descriptors, to 1e-4, for a batch of four chips."""
    import dlib
    network = dlib.face_recognition_model_v1(str(default_dat_path()))
    expected = np.array([network.compute_face_descriptor(chip) for chip in chips], dtype=np.float32)
    found = DlibResnet().descriptors(np.stack(chips))
    differences = np.abs(found - expected).max(axis=1)
    assert found.shape == (4, 128) and found.dtype == np.float32
    assert (differences < 1e-4).all(), differences


def test_a_file_that_is_not_the_network_is_refused(tmp_path):
    """A truncated file, or a layer of another version, fails with a message naming the problem."""
    data = default_dat_path().read_bytes()
    truncated, altered = tmp_path / "truncated.dat", tmp_path / "altered.dat"
    truncated.write_bytes(data[:100_000])
    altered.write_bytes(data.replace(b"\x05con_4", b"\x05con_5", 1))
    with pytest.raises(DlibFormatError, match="ends too early"):
        dlib_resnet.parse_dat(truncated)
    with pytest.raises(DlibFormatError, match="layer 0 is 'con_5', expected 'con_4'"):
        dlib_resnet.parse_dat(altered)
