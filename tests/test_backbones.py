import keras
import numpy as np
import pytest

from ml import backbones
from ml.backbones import (VGG16_NOTOP_FILE, VGGPreprocess, WeightsSource, build_vgg16, resolve_weights,
                          unfreeze_last_block)
from ml.errors import TrainingError, WeightsUnavailable


@pytest.fixture
def offline(monkeypatch):
    """Make Keras's download fail as it does without network (tests never use the network)."""
    def no_network(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -2] Name or service not known")
    monkeypatch.setattr(backbones.keras.utils, "get_file", no_network)


def test_none_means_random_weights_and_no_cache():
    source = resolve_weights("none")
    assert source == WeightsSource("none") and source.cache_id is None


def test_imagenet_without_network_names_the_file_to_supply(tmp_path, offline):
    with pytest.raises(WeightsUnavailable) as error:
        resolve_weights("imagenet", [str(tmp_path / "pretrained")])
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


def test_missing_or_mismatched_weights_files_are_refused(tmp_path):
    with pytest.raises(WeightsUnavailable, match="does not exist"):
        resolve_weights(str(tmp_path / "absent.h5"))
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    other.save_weights(tmp_path / "other.weights.h5")
    with pytest.raises(WeightsUnavailable, match="does not hold weights for VGG16"):
        build_vgg16(32, resolve_weights(str(tmp_path / "other.weights.h5")))


@pytest.mark.parametrize("size", [16, 1024])
def test_image_size_out_of_range_is_refused(size):
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


def test_a_weights_file_that_leaves_layers_unset_is_refused(tmp_path):
    small = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    partial = keras.Sequential([keras.Input((32, 32, 3))] + [small.get_layer(n) for n in ("block1_conv1",)])
    partial.save_weights(tmp_path / "partial.weights.h5")
    with pytest.raises(WeightsUnavailable, match="does not hold weights for VGG16"):
        build_vgg16(32, resolve_weights(str(tmp_path / "partial.weights.h5")))
