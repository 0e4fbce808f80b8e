"""The pretrained network that turns a face crop into features: VGG16 without its top."""
import hashlib
import socket
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

from ml.errors import TrainingError, WeightsUnavailable

VGG16_NOTOP_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
VGG16_NOTOP_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
                   + VGG16_NOTOP_FILE)
VGG16_NOTOP_MD5 = "6d6bbae143d832006294945121d1f1fc"
DOWNLOAD_TIMEOUT_S = 15
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 32, 512
FINE_TUNE_PREFIX = "block5_"    # the last convolutional block is the one fine-tuning unfreezes


@dataclass(frozen=True)
class WeightsSource:
    """Where the backbone's weights come from, as written on the model card."""
    name: str                 # "imagenet", "file" or "none"
    path: str | None = None
    sha256: str | None = None

    @property
    def cache_id(self):
        """Return an id for the feature cache, or None when the weights are random."""
        if self.name == "none":
            return None
        return f"{self.name}-{self.sha256[:16]}"

    def as_dict(self):
        """Return the source as recorded on the model card."""
        return asdict(self)


def resolve_weights(weights, pretrained_dirs=()):
    """Turn the `weights` option (imagenet | none | a file path) into a WeightsSource.

    Fails within seconds with WeightsUnavailable, naming the file an operator must supply.
    """
    if weights == "none":
        return WeightsSource("none")
    if weights == "imagenet":
        return WeightsSource("imagenet", *_imagenet_file(pretrained_dirs))
    path = Path(weights)
    if not path.is_file():
        raise WeightsUnavailable(f"The weights file {weights} does not exist. Pass --weights imagenet, "
                                 "--weights none, or the path of a VGG16 weights file (.h5 or .weights.h5).")
    return WeightsSource("file", str(path.resolve()), _sha256(path))


def _imagenet_file(pretrained_dirs):
    """Return (path, sha256) of the ImageNet file: an operator's copy, Keras's cache, or a download."""
    for folder in pretrained_dirs:
        candidate = Path(folder) / VGG16_NOTOP_FILE
        if candidate.is_file():
            if _md5(candidate) != VGG16_NOTOP_MD5:
                raise WeightsUnavailable(f"{candidate} is not the published VGG16 ImageNet weights file "
                                         f"(its MD5 is not {VGG16_NOTOP_MD5}); replace it.")
            return str(candidate), _sha256(candidate)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        path = keras.utils.get_file(VGG16_NOTOP_FILE, VGG16_NOTOP_URL, cache_subdir="models",
                                    file_hash=VGG16_NOTOP_MD5)
    except Exception as exc:
        where = pretrained_dirs[0] if pretrained_dirs else "models/pretrained/"
        raise WeightsUnavailable(
            f"The VGG16 ImageNet weights could not be downloaded ({str(exc)[-120:]}). "
            f"On a machine with internet, fetch {VGG16_NOTOP_FILE} from {VGG16_NOTOP_URL} "
            f"and copy it into {where}.") from None
    finally:
        socket.setdefaulttimeout(previous)
    return path, _sha256(Path(path))


def _sha256(path):
    return _digest(path, hashlib.sha256())


def _md5(path):
    return _digest(path, hashlib.md5())


def _digest(path, digest):
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@keras.saving.register_keras_serializable(package="facedx")
class VGGPreprocess(layers.Layer):
    """RGB 0..255 to VGG16's input (BGR, ImageNet mean removed), inside the model so it is never skipped."""

    def call(self, inputs):
        bgr = ops.flip(ops.cast(inputs, "float32"), axis=-1)
        return bgr - ops.convert_to_tensor([103.939, 116.779, 123.68], dtype="float32")


def check_image_size(image_size):
    """Refuse an input size VGG16 cannot take."""
    if not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE:
        raise TrainingError(f"image_size must be between {MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE} pixels.")


def build_vgg16(image_size, source):
    """Return VGG16 without its top, frozen, with the given weights loaded."""
    check_image_size(image_size)
    base = keras.applications.VGG16(include_top=False, weights=None,
                                    input_shape=(image_size, image_size, 3))
    if source.path:
        _load_all_weights(base, source.path)
    base.trainable = False
    return base


def _load_all_weights(base, path):
    """Load a weights file and make sure it replaced every convolution kernel."""
    kernels = [(layer.name, layer.weights[0].numpy()) for layer in base.layers if layer.weights]
    problem = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # Keras only warns about layers it skips; checked below
        try:
            base.load_weights(path)
        except Exception as exc:
            problem = f"{type(exc).__name__}: {exc}"
    if problem is None:
        unset = [name for name, before in kernels if np.array_equal(before, base.get_layer(name).weights[0].numpy())]
        problem = f"no weights for {', '.join(unset)}" if unset else None
    if problem:
        raise WeightsUnavailable(f"{path} does not hold weights for VGG16 without its top ({problem[:300]}).")


def build_feature_extractor(base):
    """Return a model from RGB pixels to one pooled feature vector per image."""
    size = base.input_shape[1]
    pixels = keras.Input((size, size, 3), name="pixels")
    features = layers.GlobalAveragePooling2D(name="pool")(base(VGGPreprocess(name="preprocess")(pixels),
                                                               training=False))
    return keras.Model(pixels, features, name="vgg16_features")


def unfreeze_last_block(base):
    """Make the last convolutional block trainable for fine-tuning; the rest stays frozen."""
    base.trainable = True
    for layer in base.layers:
        layer.trainable = layer.name.startswith(FINE_TUNE_PREFIX)
