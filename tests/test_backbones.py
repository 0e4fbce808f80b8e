import h5py
import keras
import numpy as np
import pytest

from ml.errors import TrainingError, WeightsUnavailable
from ml.features import vgg
from ml.features.availability import availability
from ml.features.dlib_face import CHIP_SIZE, DlibFaceBackbone
from ml.features.extractor import build_extractor, load_extractor
from ml.features.vgg import (
    VGG16_CONVS,
    VGG16_NOTOP_FILE,
    VGGFACE_FILE,
    VGGFACE_MEAN,
    VGGBackbone,
    VGGPreprocess,
    WeightsSource,
    build_vgg16,
    resolve_weights,
    unfreeze_last_block,
)
from ml.learning.options import TrainingOptions
from ml.photos.faces import FaceOptions, crop_face
from tests.helpers import model_card


@pytest.fixture
def offline(monkeypatch):
    """Make Keras's download fail as it does without network (tests never use the network)."""
    def no_network(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -2] Name or service not known")
    monkeypatch.setattr(vgg.keras.utils, "get_file", no_network)


@pytest.fixture(scope="module")
def dlib_face():
    return DlibFaceBackbone()


@pytest.fixture(scope="module")
def face_crops(face_photos):
    return {name: crop_face(photo, FaceOptions("mtcnn")).image for name, photo in face_photos.items()}


def test_none_means_random_weights_and_no_cache():
    source = resolve_weights("none")
    assert source == WeightsSource("none") and source.cache_id is None
    backbone = VGGBackbone.build("vgg16-imagenet", "none", 32, ())
    assert backbone.cache_id is None and "tests only" in backbone.describe()["weights"]["note"]


def test_imagenet_without_network_names_the_file_to_supply(tmp_path, offline):
    for weights in ("imagenet", "pretrained"):
        with pytest.raises(WeightsUnavailable) as error:
            resolve_weights(weights, [str(tmp_path / "pretrained")])
        assert VGG16_NOTOP_FILE in str(error.value) and str(tmp_path / "pretrained") in str(error.value)


def test_a_wrong_file_in_the_pretrained_folder_is_refused(tmp_path, offline):
    (tmp_path / VGG16_NOTOP_FILE).write_bytes(b"not the weights")
    with pytest.raises(WeightsUnavailable, match="not the published"):
        resolve_weights("imagenet", [str(tmp_path)])


def test_weights_from_a_file_are_loaded_and_identified_by_content(tmp_path):
    keras.utils.set_random_seed(1)
    original = build_vgg16(32, WeightsSource("none"))
    path = tmp_path / "vgg.weights.h5"
    original.save_weights(path)
    source = resolve_weights(str(path))
    assert source.name == "file" and source.cache_id == f"file-{source.sha256[:16]}"
    keras.utils.set_random_seed(2)
    loaded = build_vgg16(32, source)
    for a, b in zip(original.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not loaded.trainable


def test_missing_or_mismatched_weights_files_are_refused_alike(tmp_path, caplog):
    """Whether a path exists on the server is not told: missing, a folder and the wrong file read the same."""
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    other.save_weights(tmp_path / "other.weights.h5")
    (tmp_path / "folder.h5").mkdir()
    messages = []
    for name in ("absent.h5", "folder.h5", "other.weights.h5"):
        with pytest.raises(WeightsUnavailable, match="is not a VGG16 weights file") as refused:
            build_vgg16(32, resolve_weights(str(tmp_path / name)))
        messages.append(str(refused.value).replace(name, "NAME"))
    assert len(set(messages)) == 1 and "exist" not in messages[0]
    assert "FileNotFoundError" in caplog.text and "IsADirectoryError" in caplog.text     # the reason, logged


def test_a_weights_file_that_leaves_layers_unset_is_refused(tmp_path):
    small = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    partial = keras.Sequential([keras.Input((32, 32, 3))] + [small.get_layer(n) for n in ("block1_conv1",)])
    partial.save_weights(tmp_path / "partial.weights.h5")
    with pytest.raises(WeightsUnavailable, match="is not a VGG16 weights file"):
        build_vgg16(32, resolve_weights(str(tmp_path / "partial.weights.h5")))


def write_vggface_file(path, skip=None, bad_shape=None):
    """Write a file laid out like the keras-vggface conversion (layers conv1_1 .. conv5_3), random values."""
    rng = np.random.default_rng(0)
    channels = 3
    with h5py.File(path, "w") as stored:
        for block, conv in VGG16_CONVS:
            out = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}[block]
            name = f"conv{block}_{conv}"
            if name != skip:
                group = stored.create_group(name).create_group(name)
                kernel = (3, 3, channels, out) if name != bad_shape else (1, 1, channels, out)
                group.create_dataset("kernel:0", data=rng.normal(0, 0.05, kernel).astype("float32"))
                group.create_dataset("bias:0", data=rng.normal(0, 0.05, out).astype("float32"))
                stored[name].attrs["weight_names"] = [f"{name}/kernel:0".encode(), f"{name}/bias:0".encode()]
            channels = out
    return path


def test_vggface_weights_are_mapped_by_layer_name(tmp_path):
    write_vggface_file(tmp_path / VGGFACE_FILE)
    backbone = VGGBackbone.build("vggface", "pretrained", 32, [str(tmp_path)])
    with h5py.File(tmp_path / VGGFACE_FILE) as stored:
        expected = np.asarray(stored["conv3_2"]["conv3_2"]["kernel:0"])
    np.testing.assert_array_equal(backbone.base.get_layer("block3_conv2").weights[0].numpy(), expected)
    assert backbone.weights.name == "vggface" and backbone.cache_id.startswith("vggface-vggface-")
    assert backbone.extractor.get_layer("preprocess").mean == VGGFACE_MEAN


@pytest.mark.parametrize("damage, message", [({"skip": "conv4_1"}, "has no layer conv4_1"),
                                              ({"bad_shape": "conv2_2"}, "layer conv2_2 has shapes")])
def test_a_vggface_file_that_does_not_match_is_refused(tmp_path, damage, message):
    write_vggface_file(tmp_path / VGGFACE_FILE, **damage)
    with pytest.raises(WeightsUnavailable, match=message):
        VGGBackbone.build("vggface", "pretrained", 32, [str(tmp_path)])


def test_a_missing_vggface_file_names_what_to_supply(tmp_path):
    with pytest.raises(WeightsUnavailable) as error:
        VGGBackbone.build("vggface", "pretrained", 224, [str(tmp_path)])
    assert VGGFACE_FILE in str(error.value) and str(tmp_path) in str(error.value)


def test_availability_of_each_block_and_auto_candidates(tmp_path):
    from ml.learning.training import candidate_pipelines

    reasons = availability([str(tmp_path)])
    assert reasons["dlib-face"] is None and reasons["hog"] is None and reasons["geometry"] is None
    assert VGGFACE_FILE in reasons["vggface"]
    assert "vggface" not in candidate_pipelines(TrainingOptions(), [str(tmp_path)])
    write_vggface_file(tmp_path / VGGFACE_FILE)
    assert availability([str(tmp_path)])["vggface"] is None
    assert "vggface" in candidate_pipelines(TrainingOptions(), [str(tmp_path)])


def test_unknown_backbone_and_bad_image_size_are_refused():
    with pytest.raises(TrainingError, match="Unknown backbone"):
        TrainingOptions(backbone="resnet")
    with pytest.raises(TrainingError, match="Unknown face block"):
        build_extractor("resnet+hog", TrainingOptions())
    for size in (16, 1024):
        with pytest.raises(TrainingError, match="image_size"):
            build_vgg16(size, WeightsSource("none"))


def test_preprocessing_matches_keras():
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    expected = keras.applications.vgg16.preprocess_input(pixels.copy())
    np.testing.assert_allclose(np.asarray(VGGPreprocess()(pixels)), expected, rtol=1e-5, atol=1e-4)


def test_fine_tuning_unfreezes_only_the_last_block():
    base = build_vgg16(32, WeightsSource("none"))
    unfreeze_last_block(base)
    trainable = {layer.name for layer in base.layers if layer.trainable and layer.weights}
    assert trainable == {"block5_conv1", "block5_conv2", "block5_conv3"}


def test_a_saved_vgg_backbone_gives_the_same_features(tmp_path, face_crops):
    backbone = VGGBackbone.build("vgg16-imagenet", "none", 32, ())
    crops = np.stack(list(face_crops.values()))
    card = model_card(backbone=backbone.describe(), pipeline={"name": "vgg16-imagenet", "blocks": ["vgg16-imagenet"]})
    backbone.save(tmp_path)
    np.testing.assert_allclose(load_extractor(card, tmp_path).features(crops), backbone.features(crops), atol=1e-5)


def test_dlib_aligns_a_real_face_on_its_landmarks(dlib_face, face_crops):
    import cv2

    crop = face_crops["astronaut"]
    tilt = cv2.getRotationMatrix2D((crop.shape[1] / 2, crop.shape[0] / 2), 15, 1.0)
    tilted = cv2.warpAffine(crop, tilt, crop.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)
    chip = dlib_face.align(tilted)
    assert chip.shape == (CHIP_SIZE, CHIP_SIZE, 3)
    grey = cv2.cvtColor(chip, cv2.COLOR_RGB2GRAY)
    eyes = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_eye.xml").detectMultiScale(grey, 1.05, 3)
    upper = sorted((x + w / 2, y + h / 2) for x, y, w, h in eyes if y + h / 2 < CHIP_SIZE / 2)
    # The 15 degree tilt is undone: two eyes, level, one on each side of the chip's middle.
    assert len(upper) == 2
    (left_x, left_y), (right_x, right_y) = upper
    assert abs(left_y - right_y) < 6 and left_x < CHIP_SIZE / 2 < right_x


def test_dlib_descriptors_are_stable_and_tell_people_apart(dlib_face, face_crops):
    astronaut, hopper = face_crops["astronaut"], face_crops["grace_hopper"]
    vectors = dlib_face.features(np.stack([astronaut, astronaut, astronaut[:, ::-1], hopper]))
    assert vectors.shape == (4, 128)
    np.testing.assert_array_equal(vectors[0], vectors[1])
    same_person = np.linalg.norm(vectors[0] - vectors[2])
    other_person = np.linalg.norm(vectors[0] - vectors[3])
    assert same_person < 0.6 < other_person      # dlib's own threshold for "same person" is 0.6
