"""VGG16 without its top, with ImageNet or VGG-Face weights: pooled conv features of a face crop."""
import hashlib
import logging
import socket
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

from ml.errors import TrainingError, WeightsUnavailable
from ml.features.pretrained import VGG16_NOTOP_FILE, VGG16_NOTOP_MD5, VGG16_NOTOP_URL, VGGFACE_FILE, find_pretrained
from ml.photos.images import resize

# Channel means (BGR) each network was trained with.
IMAGENET_MEAN = (103.939, 116.779, 123.68)
VGGFACE_MEAN = (93.5940, 104.7624, 129.1863)
VGG16_CONVS = [(block, conv) for block, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)) for conv in range(1, n + 1)]
DOWNLOAD_TIMEOUT_S = 15
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 32, 512
FINE_TUNE_PREFIX = "block5_"    # the last convolutional block is the one fine-tuning unfreezes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WeightsSource:
    """Where the backbone's weights come from, as written on the model card."""
    name: str                 # "imagenet", "vggface", "file" or "none"
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


def resolve_weights(weights, pretrained_dirs=(), network="imagenet"):
    """Turn the `weights` option (pretrained | imagenet | none | a file path) into a WeightsSource.

    `pretrained` means the weights `network` (imagenet or vggface) was published with. Fails
    within seconds with WeightsUnavailable, naming the file an operator must supply.
    """
    if weights == "none":
        return WeightsSource("none")
    if weights == "imagenet" or (weights == "pretrained" and network == "imagenet"):
        return WeightsSource("imagenet", *_imagenet_file(pretrained_dirs))
    if weights == "pretrained":
        return WeightsSource("vggface", *_vggface_file(pretrained_dirs))
    path = Path(weights)
    try:
        return WeightsSource("file", str(path.resolve(strict=True)), _sha256(path))
    except OSError as error:              # missing, a folder, unreadable: the same answer as a wrong file
        raise unusable_weights(weights, f"{type(error).__name__}: {error}") from None


def unusable_weights(path, problem):
    """Return the one error for a weights file that cannot be used, whatever the reason.

    An administrator's path must not tell whether a file exists on the server (missing, unreadable
    and the wrong content all read the same); the reason goes to the server's log.
    """
    log.warning("weights file %s cannot be used: %s", path, problem[:300])
    return WeightsUnavailable(f"{path} is not a VGG16 weights file (without its top) that this server can read. "
                              "Use weights 'pretrained', 'none', or the path of such a file (.h5 or .weights.h5); "
                              "the server's log says why.")


def _vggface_file(pretrained_dirs):
    path = find_pretrained(VGGFACE_FILE, pretrained_dirs)
    if path is None:
        where = pretrained_dirs[0] if pretrained_dirs else "models/pretrained/"
        raise WeightsUnavailable(f"The VGG-Face weights are not on this machine: copy {VGGFACE_FILE} (the Keras "
                                 f"conversion of VGG-Face, VGG16 without its top) into {where}.")
    return str(path), _sha256(path)


def _imagenet_file(pretrained_dirs):
    """Return (path, sha256) of the ImageNet file: an operator's copy, Keras's cache, or a download."""
    candidate = find_pretrained(VGG16_NOTOP_FILE, pretrained_dirs)
    if candidate is not None:
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
    """RGB 0..255 to VGG16's input (BGR, the training set's mean removed), inside the model so it is never skipped."""

    def __init__(self, mean=IMAGENET_MEAN, **kwargs):
        super().__init__(**kwargs)
        self.mean = tuple(float(m) for m in mean)

    def call(self, inputs):
        bgr = ops.flip(ops.cast(inputs, "float32"), axis=-1)
        return bgr - ops.convert_to_tensor(self.mean, dtype="float32")

    def get_config(self):
        return dict(super().get_config(), mean=list(self.mean))


def check_image_size(image_size):
    """Refuse an input size VGG16 cannot take."""
    if not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE:
        raise TrainingError(f"image_size must be between {MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE} pixels.")


def build_vgg16(image_size, source):
    """Return VGG16 without its top, frozen, with the given weights loaded."""
    check_image_size(image_size)
    base = keras.applications.VGG16(include_top=False, weights=None,
                                    input_shape=(image_size, image_size, 3))
    if source.name == "vggface":
        _load_vggface(base, source.path)
    elif source.path:
        _load_all_weights(base, source.path)
    base.trainable = False
    return base


def _load_vggface(base, path):
    """Load the keras-vggface file, whose layers are named conv1_1 .. conv5_3, by name into VGG16."""
    import h5py

    try:
        with h5py.File(path, "r") as stored:
            root = stored["model_weights"] if "model_weights" in stored else stored
            for block, conv in VGG16_CONVS:
                name = f"conv{block}_{conv}"
                if name not in root:
                    raise WeightsUnavailable(f"{path} does not match VGG-Face: it has no layer {name}.")
                group = root[name]
                arrays = [np.asarray(group[weight]) for weight in _weight_names(group)]
                layer = base.get_layer(f"block{block}_conv{conv}")
                if [a.shape for a in arrays] != [tuple(w.shape) for w in layer.weights]:
                    raise WeightsUnavailable(f"{path} does not match VGG-Face: layer {name} has shapes "
                                             f"{[a.shape for a in arrays]}.")
                layer.set_weights(arrays)
    except OSError as exc:
        raise WeightsUnavailable(f"{path} cannot be read as a VGG-Face weights file ({exc}).") from None


def _weight_names(group):
    """Return the datasets of one layer in the order Keras wrote them (kernel, then bias)."""
    names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs.get("weight_names", [])]
    if names:
        return names
    found = []
    group.visititems(lambda name, item: found.append(name) if hasattr(item, "shape") else None)
    return sorted(found, key=lambda n: "bias" in n)


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
        raise unusable_weights(path, problem)


def build_feature_extractor(base, mean=IMAGENET_MEAN):
    """Return a model from RGB pixels to one pooled feature vector per image."""
    size = base.input_shape[1]
    pixels = keras.Input((size, size, 3), name="pixels")
    preprocessed = VGGPreprocess(mean, name="preprocess")(pixels)
    features = layers.GlobalAveragePooling2D(name="pool")(base(preprocessed, training=False))
    return keras.Model(pixels, features, name="vgg16_features")


def unfreeze_last_block(base):
    """Make the last convolutional block trainable for fine-tuning; the rest stays frozen."""
    base.trainable = True
    for layer in base.layers:
        layer.trainable = layer.name.startswith(FINE_TUNE_PREFIX)


class VGGBackbone:
    """VGG16 features of a face crop: resized to the input size, preprocessed, pooled (an Extractor)."""
    attributable, has_conv_maps, occludable = False, True, False

    def __init__(self, name, extractor, weights):
        self.name, self.extractor, self.weights = name, extractor, weights
        self.input_size = extractor.input_shape[1]
        self.feature_size = extractor.output_shape[-1]
        self._infer = None
        self._submodels = {}

    @classmethod
    def build(cls, name, weights, image_size, pretrained_dirs):
        """Build the backbone `name` (vgg16-imagenet or vggface) with the `weights` option."""
        network = "vggface" if name == "vggface" else "imagenet"
        source = resolve_weights(weights, pretrained_dirs, network)
        mean = VGGFACE_MEAN if network == "vggface" else IMAGENET_MEAN
        return cls(name, build_feature_extractor(build_vgg16(image_size, source), mean), source)

    @property
    def base(self):
        return self.extractor.get_layer("vgg16")

    @property
    def cache_id(self):
        if self.weights.cache_id is None:
            return None
        return f"{self.name}-{self.weights.cache_id}-{self.input_size}"

    @property
    def cache_ids(self):
        return [self.cache_id]

    @property
    def block_sizes(self):
        return [self.feature_size]

    def block_features(self, crops, reference=None):
        """Return the features as the one block of this extractor."""
        return [self.features(crops)]

    def describe(self):
        weights = self.weights.as_dict()
        if self.weights.name == "none":
            weights["note"] = "random initialisation, for tests only: no real predictions"
        return {"name": self.name, "input_size": self.input_size, "feature_size": self.feature_size,
                "weights": weights, "alignment": "face crop resized, no landmark alignment"}

    def submodel(self, layer_name):
        """Return VGG16 from its input to `layer_name`'s output (built once; used by Grad-CAM)."""
        if layer_name not in self._submodels:
            self._submodels[layer_name] = keras.Model(self.base.inputs, self.base.get_layer(layer_name).output)
        return self._submodels[layer_name]

    def pixels(self, crops):
        """Return crops resized to the network's input, as float32."""
        return np.stack([resize(c, self.input_size) for c in crops]).astype("float32")

    def features(self, crops, reference=None, batch_size=32):
        """Return one pooled feature vector per crop (uint8 squares of any size); `reference` is unused."""
        if self._infer is None:
            import tensorflow as tf

            size = self.input_size
            self._infer = tf.function(lambda x: self.extractor(x, training=False), reduce_retracing=True,
                                      input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
        chunks = [np.asarray(self._infer(self.pixels(crops[i:i + batch_size])))
                  for i in range(0, len(crops), batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.feature_size), np.float32)

    def save(self, folder):
        """Write the (possibly fine-tuned) extractor; return the file names written."""
        self.extractor.save(folder / "backbone.keras")
        return ["backbone.keras"]

    @classmethod
    def load(cls, card, folder):
        """Load the extractor a model version was trained with."""
        extractor = keras.saving.load_model(folder / "backbone.keras", compile=False, safe_mode=True)
        weights = {k: v for k, v in card.backbone["weights"].items() if k != "note"}
        return cls(card.backbone["name"], extractor, WeightsSource(**weights))
