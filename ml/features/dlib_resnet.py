"""dlib's face-recognition ResNet rebuilt in Keras, from the weights in dlib's own model file.

dlib-bin computes a descriptor in about a tenth of a second of CPU, one chip after another; as a Keras
model the same descriptors come out of TensorFlow (or JAX) in batches, on any device Keras uses.

The weights are read from `dlib_face_recognition_resnet_model_v1.dat` (shipped by the
`face-recognition-models` package) without dlib: the reader (ml/features/dlib_format.py) follows dlib's
serialisation (dlib/serialize.h, dlib/dnn/core.h, layers.h, input.h, loss.h, tensor.h) for exactly the
network of dlib's examples/dnn_face_recognition_ex.cpp, and refuses a file whose layers, sizes or versions
differ. Two things in that network are easy to get wrong:
- a strided convolution or pooling has no padding (dlib's default is half the filter only at stride
  1), so the maps go 150, 72, 35, 17, 8 px, and in the last two down-sampling blocks the strided
  branch gives 3 then 1 px while the average-pooled shortcut gives 4 then 2;
- add_prev adds tensors of different sizes by zero-extending the smaller one at the end of its rows,
  columns and channels, so a 3 px branch lands in the top-left corner of a 4 px shortcut, and a
  shortcut of 32 channels fills only the first half of a block's 64.

The file is read when the network is first used: parsing its 22 MB takes 16-37 ms and building
the Keras model 0.7 s, while a checksum of the file alone (what a cached copy of the arrays would
need before it could be trusted) takes 19-29 ms, so no copy is kept.
"""
import threading

import keras
import numpy as np
from keras import layers, ops

from ml.features.dlib_format import (
    ARCHITECTURE,
    CHIP_SIZE,
    DESCRIPTOR_SIZE,
    TAIL_START,
    DlibFormatError,
    default_dat_path,
    parse_dat,
)

BATCH_SIZE = 32
# Explanations look at the output of the 128-filter stage: an 8 x 8 map, a cell per 19 px of the chip
# (what follows, two 256-filter stages, ends in 2 x 2 before the pool: too coarse to show a region).
MAP_SIDE = 8
IG_STEPS = 8             # measured: the cells' shares add up to the score's change to within 2-15%
TAIL_FILE = "face_tail.npz"


class DlibInput(layers.Layer):
    """dlib's input_rgb_image_sized: (pixel - channel mean) / 256, RGB."""

    def __init__(self, mean, **kwargs):
        super().__init__(**kwargs)
        self.mean = [float(m) for m in mean]

    def call(self, chips):
        return (ops.cast(chips, "float32") - ops.convert_to_tensor(self.mean, "float32")) / 256.0

    def get_config(self):
        return {**super().get_config(), "mean": self.mean}


class ChannelAffine(layers.Layer):
    """dlib's affine_ in CONV_MODE: the frozen batch normalisation, x * gamma + beta per channel."""

    def build(self, input_shape):
        self.gamma = self.add_weight(shape=(input_shape[-1],), initializer="ones", trainable=False, name="gamma")
        self.beta = self.add_weight(shape=(input_shape[-1],), initializer="zeros", trainable=False, name="beta")

    def call(self, x):
        return x * self.gamma + self.beta


class ZeroExtendAdd(layers.Layer):
    """dlib's add_prev_: the sum of two tensors, the smaller zero-extended at the end of rows, columns and channels."""

    def call(self, inputs):
        first, second = inputs
        target = [max(a, b) for a, b in zip(first.shape[1:], second.shape[1:])]
        return self._extend(first, target) + self._extend(second, target)

    @staticmethod
    def _extend(x, target):
        missing = [t - s for t, s in zip(target, x.shape[1:])]
        return ops.pad(x, [[0, 0]] + [[0, m] for m in missing]) if any(missing) else x


def build_model(weights, start=0, stop=len(ARCHITECTURE), model_name="dlib_face_recognition_resnet_v1"):
    """Build the Keras network, layer for layer as dlib declares it, with `weights` from parse_dat().

    `start` and `stop` build a part: from the chips (start 0) or from the 8 x 8 map (TAIL_START),
    up to the descriptor or to the layer before `stop`.
    """
    if start == 0:
        inputs = keras.Input((CHIP_SIZE, CHIP_SIZE, 3), name="chips")
        x = DlibInput(weights["input.mean"], name="input_rgb")(inputs)
    elif start == TAIL_START:
        inputs = x = keras.Input((MAP_SIDE, MAP_SIDE, 128), name="map")
    else:
        raise ValueError(f"The network can be built from the chips or from layer {TAIL_START}, not {start}.")
    tagged = {}
    for index in range(start, stop):
        layer, name = ARCHITECTURE[index], f"{index:03d}"
        if layer.kind == "tag":
            tagged[layer.tag] = x
        elif layer.kind == "skip":
            x = tagged[layer.tag]
        elif layer.kind == "con":
            if layer.padding:       # explicit, symmetric: "same" would pad a strided even input on one side only
                x = layers.ZeroPadding2D(layer.padding, name=f"pad_{name}")(x)
            conv = layers.Conv2D(layer.filters, layer.size, strides=layer.stride, name=f"con_{name}")
            x = conv(x)
            # dlib keeps filters as (out, in, rows, columns); Keras as (rows, columns, in, out).
            conv.set_weights([weights[f"{name}.filters"].transpose(2, 3, 1, 0), weights[f"{name}.biases"]])
        elif layer.kind == "affine":
            affine = ChannelAffine(name=f"affine_{name}")
            x = affine(x)
            affine.set_weights([weights[f"{name}.gamma"], weights[f"{name}.beta"]])
        elif layer.kind == "relu":
            x = layers.ReLU(name=f"relu_{name}")(x)
        elif layer.kind == "max_pool":
            x = layers.MaxPooling2D(layer.size, layer.stride, name=f"max_pool_{name}")(x)
        elif layer.kind == "avg_pool" and layer.size:
            x = layers.AveragePooling2D(layer.size, layer.stride, name=f"avg_pool_{name}")(x)
        elif layer.kind == "avg_pool":
            x = layers.GlobalAveragePooling2D(name=f"avg_pool_everything_{name}")(x)
        elif layer.kind == "add_prev":
            x = ZeroExtendAdd(name=f"add_prev_{name}")([x, tagged[layer.tag]])
        elif layer.kind == "fc":
            dense = layers.Dense(layer.filters, use_bias=False, name=f"fc_{name}")
            x = dense(x)
            dense.set_weights([weights[f"{name}.weights"]])
    return keras.Model(inputs, x, name=model_name)


class DlibResnet:
    """dlib's face-recognition ResNet in Keras: 128-d descriptors of aligned 150 px chips, computed in batches.

    The network is two models in one: the front, up to the 8 x 8 map, and the tail (the 256-filter
    stages and the descriptor's layer). `tail` gives the tail fine-tuned weights (tail_weights()).
    """

    def __init__(self, dat_path=None, batch_size=BATCH_SIZE, tail=None):
        self.dat_path = dat_path
        self.batch_size = batch_size
        self.tuned = tail is not None
        self._tail = tail
        self._model = None
        self._split = None          # (front, tail), the models the whole network is made of
        self._integrated = {}       # the traced integrated-gradients function, per number of steps
        self._load_lock = threading.Lock()
        # predict_on_batch traces its function on first use and, under JAX, swaps the model's variables during
        # a call, so calls take turns; each batch already uses every core.
        self._run_lock = threading.Lock()

    @classmethod
    def tuned_from(cls, folder):
        """Return the network with the fine-tuned tail a model version saved in `folder` (TAIL_FILE)."""
        try:
            with np.load(folder / TAIL_FILE, allow_pickle=False) as saved:
                tail = [saved[f"arr_{i}"] for i in range(len(saved.files))]
        except (OSError, ValueError, KeyError) as error:
            raise DlibFormatError(f"The fine-tuned face network of this version cannot be read: {error}") from None
        network = cls(tail=tail)
        network.model()                        # check the arrays against the network now, not at the first photo
        return network

    def model(self, loaded=None):
        """Return the Keras network, reading its weights on first use (once, whichever thread asks first).

        `loaded()` is called after each step of a first load: weights read, front built, tail built.
        """
        loaded = loaded or (lambda: None)
        if self._model is None:
            with self._load_lock:
                if self._model is None:
                    weights = parse_dat(self.dat_path or default_dat_path())
                    loaded()
                    front = build_model(weights, stop=TAIL_START, model_name="front")
                    loaded()
                    tail = build_model(weights, start=TAIL_START, model_name="tail")
                    loaded()
                    if self._tail is not None:
                        shapes = [w.shape for w in tail.get_weights()]
                        if [np.shape(w) for w in self._tail] != shapes:
                            raise DlibFormatError("The fine-tuned face network's arrays do not fit the network.")
                        tail.set_weights(self._tail)
                    chips = keras.Input((CHIP_SIZE, CHIP_SIZE, 3), name="chips")
                    self._split = front, tail
                    self._model = keras.Model(chips, tail(front(chips)), name="dlib_face_recognition_resnet_v1")
        return self._model

    def halves(self):
        """Return (front, tail): the network up to its 8 x 8 map (the 128-filter stage's end), and the rest."""
        self.model()
        return self._split

    def tail_weights(self):
        """Return the tail's weights, as `tail` takes them."""
        return self.halves()[1].get_weights()

    def save_tail(self, folder):
        """Save the tail's weights in `folder` (arrays only, no pickle); return the file names."""
        np.savez(folder / TAIL_FILE, *self.tail_weights())
        return [TAIL_FILE]

    def descriptors(self, chips):
        """Return the descriptor of each RGB chip (dlib.get_face_chip, 150 px, padding 0.25): float32 [n, 128]."""
        chips = np.asarray(chips, dtype=np.float32)
        if chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ValueError(f"Expected RGB chips of shape (n, {CHIP_SIZE}, {CHIP_SIZE}, 3), got {chips.shape}.")
        model = self.model()
        batches = []
        for start in range(0, len(chips), self.batch_size):
            with self._run_lock:
                batches.append(np.asarray(model.predict_on_batch(chips[start:start + self.batch_size])))
        return np.concatenate(batches).astype(np.float32) if batches else np.zeros((0, DESCRIPTOR_SIZE), np.float32)

    def activations(self, chips):
        """Return (the 8 x 8 maps [n, 8, 8, 128] the explanations look at, descriptors [n, 128]) of RGB chips."""
        chips = np.asarray(chips, dtype=np.float32)
        with self._run_lock:
            front, back = self.halves()
            activations = np.asarray(front.predict_on_batch(chips))
            return activations, np.asarray(back.predict_on_batch(activations)).astype(np.float32)

    def integrated_gradients(self, activations, directions, steps=IG_STEPS):
        """Return [n, 8, 8]: how much each cell of each chip's 8 x 8 map adds to `direction . descriptor`.

        Integrated gradients (Sundararajan et al. 2017) from an all-zero map to the chip's, through the
        network's last two stages: the cells' shares add up to the score's change along that path (to
        within the `steps`-point midpoint rule), unlike the gradient times activation, whose first
        order misses the biases. Each chip has its own direction (e.g. a linear head's weights).
        """
        import tensorflow as tf  # gradients need the backend: explanations run where TensorFlow serves

        activations = tf.constant(np.asarray(activations, np.float32))
        directions = tf.constant(np.asarray(directions, np.float32).reshape(-1, DESCRIPTOR_SIZE))
        with self._run_lock:
            maps = self._integrated_function(tf, steps)(activations, directions)
        return maps.numpy().astype(np.float64)

    def _integrated_function(self, tf, steps):
        if steps not in self._integrated:
            _, back = self.halves()
            cell = (MAP_SIDE, MAP_SIDE, back.input.shape[-1])
            alphas = tf.constant((np.arange(steps) + 0.5) / steps, tf.float32)

            @tf.function(input_signature=[tf.TensorSpec((None, *cell), tf.float32),
                                          tf.TensorSpec((None, DESCRIPTOR_SIZE), tf.float32)])
            def integrated(activations, directions):
                path = tf.reshape(alphas[:, None, None, None, None] * activations[None], (-1, *cell))
                with tf.GradientTape() as tape:        # all steps of all chips in one batch
                    tape.watch(path)
                    score = tf.reduce_sum(back(path, training=False) * tf.tile(directions, (steps, 1)))
                gradients = tf.reshape(tape.gradient(score, path), (steps, -1, *cell))
                return tf.reduce_sum(tf.reduce_mean(gradients, axis=0) * activations, axis=-1)
            self._integrated[steps] = integrated
        return self._integrated[steps]
