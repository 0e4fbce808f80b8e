"""dlib's model file format: the face-recognition ResNet's layers as dlib declares them, and a reader for its weights.

The weights are read from `dlib_face_recognition_resnet_model_v1.dat` (shipped by the
`face-recognition-models` package) without dlib: the reader follows dlib's serialisation
(dlib/serialize.h, dlib/dnn/core.h, layers.h, input.h, loss.h, tensor.h) for exactly the network of
dlib's examples/dnn_face_recognition_ex.cpp, and refuses a file whose layers, sizes or versions
differ. ml/features/dlib_resnet.py builds the Keras network from what parse_dat() returns.
"""
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ml.errors import WeightsUnavailable

CHIP_SIZE = 150
DESCRIPTOR_SIZE = 128


class DlibFormatError(WeightsUnavailable):
    """The model file is not dlib's face-recognition ResNet v1 as this reader knows it."""


@dataclass(frozen=True)
class Layer:
    """One layer of the network as dlib declares it."""
    kind: str               # con, affine, relu, max_pool, avg_pool, add_prev, tag, skip or fc
    filters: int = 0        # output channels of a con, outputs of the fc
    size: int = 0           # filter or window side; 0 for avg_pool_everything (the whole input)
    stride: int = 1
    tag: int = 0            # the tag that a tag, skip or add_prev layer names

    @property
    def padding(self):
        """Return dlib's default padding, the only one its deserialiser accepts: half the filter, unless strided."""
        return self.size // 2 if self.stride == 1 else 0


def _block(filters, stride):
    return [Layer("con", filters, 3, stride), Layer("affine"), Layer("relu"), Layer("con", filters, 3, 1),
            Layer("affine")]


def _ares(filters):
    return [Layer("tag", tag=1), *_block(filters, 1), Layer("add_prev", tag=1), Layer("relu")]


def _ares_down(filters):
    return [Layer("tag", tag=1), *_block(filters, 2), Layer("tag", tag=2), Layer("skip", tag=1),
            Layer("avg_pool", size=2, stride=2), Layer("add_prev", tag=2), Layer("relu")]


# anet_type of dnn_face_recognition_ex.cpp, from the input upwards (the loss_metric on top has no weights).
_FRONT = ([Layer("con", 32, 7, 2), Layer("affine"), Layer("relu"), Layer("max_pool", size=3, stride=2)]
          + _ares(32) * 3 + _ares_down(64) + _ares(64) * 3 + _ares_down(128) + _ares(128) * 2)
_TAIL = _ares_down(256) + _ares(256) * 2 + _ares_down(256) + [Layer("avg_pool", size=0, stride=1),
                                                                 Layer("fc", DESCRIPTOR_SIZE)]
ARCHITECTURE = tuple(_FRONT + _TAIL)
# Where the 256-filter stages start, on the 8 x 8 map of the 128-filter stage's end: explanations
# integrate from there, and fine-tuning trains those stages and the descriptor's layer.
TAIL_START = len(_FRONT)
VERSION_STRINGS = {"con": "con_4", "affine": "affine_", "relu": "relu_", "max_pool": "max_pool_2",
                   "avg_pool": "avg_pool_2", "add_prev": "add_prev_", "fc": "fc_2"}
CONV_MODE = 0             # affine_'s layer_mode: one scale and shift per channel
FC_NO_BIAS = 1


def default_dat_path():
    """Return the path of the model file that the face-recognition-models package ships."""
    try:
        import face_recognition_models
    except ImportError as exc:
        raise WeightsUnavailable(f"The Keras dlib ResNet needs the face-recognition-models package ({exc}).") from None
    return Path(face_recognition_models.face_recognition_model_location())


class _Reader:
    """dlib's serialisation primitives over the bytes of one file."""

    def __init__(self, data, path):
        self.data, self.path, self.pos = data, path, 0

    def fail(self, what):
        raise DlibFormatError(f"{self.path} is not dlib's face-recognition ResNet v1: {what} (byte {self.pos}).")

    def take(self, count):
        if self.pos + count > len(self.data):
            self.fail("the file ends too early")
        chunk = self.data[self.pos:self.pos + count]
        self.pos += count
        return chunk

    def integer(self):
        # A control byte (bit 7: negative, low 4 bits: how many bytes follow), then the magnitude, little-endian.
        control = self.take(1)[0]
        if control & 0x70 or (control & 0x0F) > 8:
            self.fail(f"0x{control:02x} is not an integer's control byte")
        value = int.from_bytes(self.take(control & 0x0F), "little")
        return -value if control & 0x80 else value

    def floating(self):
        # dlib's portable float: the mantissa, then the exponent (serialize.h's comment says the reverse).
        mantissa, exponent = self.integer(), self.integer()
        specials = {32000: math.inf, 32001: -math.inf, 32002: math.nan}
        return specials[exponent] if exponent in specials else math.ldexp(mantissa, exponent)

    def flag(self):
        byte = self.take(1)
        if byte not in (b"0", b"1"):
            self.fail(f"{byte!r} is not a bool")
        return byte == b"1"

    def string(self):
        return self.take(self.integer()).decode("latin-1")

    def expect(self, what, value, expected):
        if value != expected:
            self.fail(f"{what} is {value!r}, expected {expected!r}")

    def version(self, what, allowed):
        value = self.integer()
        if value not in allowed:
            self.fail(f"{what} has version {value}, expected one of {sorted(allowed)}")
        return value

    def tensor(self, what, shape=None):
        """Read a tensor: version 2, then num_samples k nr nc, then the values as little-endian float32."""
        self.version(what, {2})
        dims = tuple(self.integer() for _ in range(4))
        if shape is not None:
            self.expect(f"the size of {what}", dims, shape)
        count = math.prod(dims)
        return np.frombuffer(self.take(4 * count), dtype="<f4").astype(np.float32)

    def alias(self, what, shape):
        """Check an alias_tensor, which dlib stores as a shape only."""
        self.version(what, {1})
        self.expect(f"the shape of {what}", tuple(self.integer() for _ in range(4)), shape)


def parse_dat(path):
    """Read dlib_face_recognition_resnet_model_v1.dat into {name: float32 array}, checking every layer."""
    path = Path(path)
    reader = _Reader(path.read_bytes(), path)
    # add_loss_layer: version, loss_metric_ (margin, distance threshold), then the network.
    reader.version("add_loss_layer", {1})
    reader.expect("the loss", reader.string(), "loss_metric_2")
    for _ in range(2):
        reader.floating()
    # Each add_layer writes its version, then the layer below, then its own details: so the versions of all
    # layers come first (top down), then the input layer, then the details (bottom up).
    versions = []
    for index in reversed(range(len(ARCHITECTURE))):
        kind = ARCHITECTURE[index].kind
        if kind in ("tag", "skip"):
            reader.version(f"the {kind} layer {index}", {1})
        else:
            versions.append(reader.version(f"layer {index} ({kind})", {2, 3} if index == 0 else {1, 2}))
    versions.reverse()
    arrays = {"input.mean": _read_input(reader)}
    channels, tagged, computational = 3, {}, iter(versions)
    for index, layer in enumerate(ARCHITECTURE):
        if layer.kind == "tag":
            tagged[layer.tag] = channels
            continue
        if layer.kind == "skip":
            channels = tagged[layer.tag]
            continue
        reader.expect(f"layer {index}", reader.string(), VERSION_STRINGS[layer.kind])
        arrays.update(_read_details(reader, index, layer, channels))
        if layer.kind == "con":
            channels = layer.filters
        elif layer.kind == "add_prev":
            channels = max(channels, tagged[layer.tag])
        _skip_state(reader, index, next(computational))
    if reader.pos != len(reader.data):
        reader.fail(f"{len(reader.data) - reader.pos} bytes follow the network")
    return arrays


def _read_input(reader):
    reader.expect("the input layer", reader.string(), "input_rgb_image_sized")
    mean = np.array([reader.floating() for _ in range(3)], dtype=np.float32)    # avg_red, avg_green, avg_blue
    reader.expect("the input size", (reader.integer(), reader.integer()), (CHIP_SIZE, CHIP_SIZE))
    return mean


def _read_details(reader, index, layer, channels):
    """Read one layer's own fields, checking them against `layer`; return its weights by name."""
    name = f"{index:03d}"
    if layer.kind == "con":
        filters_shape = (layer.filters, channels, layer.size, layer.size)
        params = reader.tensor(f"con {name}'s parameters", (math.prod(filters_shape) + layer.filters, 1, 1, 1))
        config = tuple(reader.integer() for _ in range(7))
        reader.expect(f"con {name}'s filters, rows, columns, strides and paddings", config,
                      (layer.filters, layer.size, layer.size, layer.stride, layer.stride, layer.padding, layer.padding))
        reader.alias(f"con {name}'s filters", filters_shape)
        reader.alias(f"con {name}'s biases", (1, layer.filters, 1, 1))
        for _ in range(4):      # learning-rate and weight-decay multipliers
            reader.floating()
        split = math.prod(filters_shape)
        return {f"{name}.filters": params[:split].reshape(filters_shape), f"{name}.biases": params[split:]}
    if layer.kind == "affine":
        params = reader.tensor(f"affine {name}'s parameters", (2 * channels, 1, 1, 1))
        reader.alias(f"affine {name}'s scales", (1, channels, 1, 1))
        reader.alias(f"affine {name}'s shifts", (1, channels, 1, 1))
        reader.expect(f"affine {name}'s mode", reader.integer(), CONV_MODE)
        return {f"{name}.gamma": params[:channels], f"{name}.beta": params[channels:]}
    if layer.kind in ("max_pool", "avg_pool"):
        config = tuple(reader.integer() for _ in range(6))
        reader.expect(f"{layer.kind} {name}'s rows, columns, strides and paddings", config,
                      (layer.size, layer.size, layer.stride, layer.stride, layer.padding, layer.padding))
    elif layer.kind == "fc":
        sizes = (reader.integer(), reader.integer())
        reader.expect(f"fc {name}'s outputs and inputs", sizes, (layer.filters, channels))
        weights = reader.tensor(f"fc {name}'s weights", (channels, layer.filters, 1, 1))
        reader.alias(f"fc {name}'s weights", (channels, layer.filters, 1, 1))
        reader.alias(f"fc {name}'s biases", (0, 0, 0, 0))
        reader.expect(f"fc {name}'s bias mode", reader.integer(), FC_NO_BIAS)
        for _ in range(4):
            reader.floating()
        return {f"{name}.weights": weights.reshape(channels, layer.filters)}
    return {}


def _skip_state(reader, index, version):
    """Read past the training state that add_layer saves after its layer: flags and gradient buffers."""
    for _ in range(3):          # setup called, gradient input stale, output and gradient getters disabled
        reader.flag()
    if index == 0:              # the add_layer on the input layer saves other things
        for buffer in ("x_grad", "cached_output", "grad_final"):
            reader.tensor(f"layer {index}'s {buffer}")
        if version == 3:
            reader.integer()        # sample expansion factor
        return
    for buffer in ("x_grad", "cached_output", "params_grad")[:version + 1]:     # version 2 added params_grad
        reader.tensor(f"layer {index}'s {buffer}")

