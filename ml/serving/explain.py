"""Why a model said what it said: Grad-CAM for VGG16 backbones, attribution for face blocks under a linear head.

Attribution: a linear head's evidence for a class is a sum over feature values, and every face
block knows where on the face each of its values was read (ml/features/located.py). Each value's
share (the gradient of the class's log-probability times the value's distance from the training
mean) is spread over that place, the face network's through integrated gradients on its 8 x 8 map;
the map is the sum, smoothed, where it is positive. It costs about one more prediction. Occlusion
sensitivity stays for heads that are not linear and versions from before blocks.
"""
import base64
import time
from dataclasses import dataclass

import cv2
import numpy as np

from ml.photos.images import encode_png

LAST_CONV = "block5_conv3"
# Occlusion patches overlap by half (stride: half a patch), GRID positions a side: 144 extra
# predictions, each patch 2/13 of the square occluded wide (23 px of dlib's 150 px aligned chip).
GRID = 12
OCCLUSION_FILL = 127
# Only the strongest regions are coloured: map values under SHOWN_FROM leave the face untinted.
# COLOUR_SCALE gives the colour (RGB) of a map value, interpolated between its stops; the page
# draws the same stops as the map's scale.
SHOWN_FROM = 0.5
COLOUR_SCALE = ((0.5, (255, 230, 0)), (0.75, (255, 128, 0)), (1.0, (200, 0, 0)))
OPACITY = 0.6
FADE_IN = 0.1            # the colour's opacity ramps up over this much of the scale above SHOWN_FROM
SMOOTHING = 6.0          # px of the 256 px crop: an attribution map is blurred this much (sigma)


@dataclass(frozen=True)
class Explanation:
    """The regions of the face that weighed most in the model's choice of one class."""
    method: str              # "attribution", "occlusion" or "grad-cam"
    heatmap: np.ndarray      # float32, the crop's size, 0..1 (1: the region that weighed most)
    overlay_png: bytes       # the untinted face with only the regions at or above SHOWN_FROM coloured
    seconds: float           # what computing it cost

    @property
    def overlay_png_base64(self):
        """The overlay PNG as base64 text: `overlay_png_base64` in the API and on the result page alike."""
        return base64.b64encode(self.overlay_png).decode()

    def as_dict(self):
        """Return the explanation as the API's JSON object.

        `heatmap_png_base64` is the overlay's first name in the API, kept for its clients and
        deprecated (docs/api.md): it holds the same PNG.
        """
        overlay = self.overlay_png_base64
        return {"method": self.method, "overlay_png_base64": overlay, "heatmap_png_base64": overlay,
                "seconds": round(self.seconds, 3)}


def explanation(loaded, crop, class_index=None):
    """Return the Explanation of `class_index` (None: the class the model names) for a face crop, in memory only."""
    start = time.perf_counter()
    heat, method = explain(loaded, crop, class_index)
    heat = heat.astype(np.float32)
    return Explanation(method, heat, overlay_png(crop, heat), time.perf_counter() - start)


def explain(loaded, crop, class_index=None):
    """Return (heat map in [0, 1] over the crop, method name) for a class (None: the class the model names).

    The method follows what the extractor and head say they can do (ml/features/contract.py).
    """
    extractor = loaded.backbone
    if extractor.attributable and getattr(loaded.head, "linear", False):        # undeclared: not linear
        return attribution_map(loaded, crop, class_index), "attribution"
    if class_index is None:
        class_index = int(np.argmax(loaded.probabilities(crop[np.newaxis], calibrated=False)[0]))
    if extractor.has_conv_maps:
        return grad_cam(extractor, loaded.head, crop, class_index), "grad-cam"
    if extractor.occludable:
        return chip_occlusion_map(loaded, crop, class_index), "occlusion"
    return crop_occlusion_map(loaded, crop, class_index), "occlusion"


def attribution_map(loaded, crop, class_index=None):
    """Where on the face the evidence for a class lies: every block's share of the linear score, placed and summed.

    One reading of the face gives the served features and where each block read them; the head
    gives the direction that raises the class's log-probability at those features.
    """
    frame, readings = loaded.backbone.read(crop)
    features = np.concatenate([reading.values for reading in readings]).astype(np.float32)
    if class_index is None:
        class_index = int(np.argmax(loaded.head.probabilities(features[np.newaxis])[0]))
    direction, mean = loaded.head.direction(features, class_index)
    on_chip, on_crop = np.zeros(frame.chip.shape[:2]), np.zeros(crop.shape[:2])
    start = 0
    for reading in readings:
        end = start + len(reading.values)
        density = reading.locate(direction[start:end], mean[start:end])
        if reading.on == "chip":
            on_chip += density
        else:
            on_crop += density
        start = end
    heat = cv2.GaussianBlur(on_crop + frame.density_on_crop(on_chip), (0, 0), SMOOTHING)
    return _normalised(np.maximum(heat, 0.0))


def grad_cam(backbone, head, crop, class_index):
    """Grad-CAM on VGG16's last convolution: where the evidence for `class_index` lies."""
    import tensorflow as tf  # here: the pages that show maps, and the commands, start without it

    vgg = backbone.base
    upto_conv = backbone.submodel(LAST_CONV)
    pixels = tf.constant(backbone.pixels(crop[np.newaxis]))
    conv = upto_conv(backbone.extractor.get_layer("preprocess")(pixels), training=False)
    with tf.GradientTape() as tape:
        tape.watch(conv)
        pooled = vgg.get_layer("block5_pool")(conv)
        features = tf.reduce_mean(pooled, axis=(1, 2))
        score = head.log_probability(features, class_index)
    gradients = tape.gradient(score, conv)[0]
    weights = tf.reduce_mean(gradients, axis=(0, 1))
    cam = tf.nn.relu(tf.reduce_sum(conv[0] * weights, axis=-1)).numpy()
    return _normalised(cv2.resize(cam, crop.shape[1::-1], interpolation=cv2.INTER_CUBIC))


def chip_occlusion_map(loaded, crop, class_index, grid=GRID):
    """Occlude the aligned chip of face blocks (aligned once, not per patch), and draw the map back onto the crop."""
    frame = loaded.backbone.chip_frame(crop)

    def probabilities(boxes):
        # Uncalibrated: a temperature below 1 can round a confident probability to exactly 1.
        return loaded.head.probabilities(loaded.backbone.occluded_features(frame, boxes, OCCLUSION_FILL))
    return _normalised(frame.on_crop(occlusion_map(frame.chip.shape[0], probabilities, class_index, grid)))


def crop_occlusion_map(loaded, crop, class_index, grid=GRID):
    """Occlude the crop itself, for extractors that align each crop on their own (versions from before blocks)."""
    def probabilities(boxes):
        occluded = [_filled(crop, box) for box in boxes]
        return loaded.probabilities(np.stack(occluded), reference=crop, calibrated=False)
    return occlusion_map(crop.shape[0], probabilities, class_index, grid)


def occlusion_map(size, probabilities, class_index, grid=GRID):
    """Grey out one patch at a time of a `size` square: where the class's log-probability drops, it relied on.

    `probabilities(boxes)` returns the class probabilities with each box (x0, y0, x1, y1) greyed
    out, None meaning nothing is. Patches overlap by half; the map is averaged over them, smoothed
    and scaled to [0, 1].
    """
    stride = size / (grid + 1)
    starts = [int(round(i * stride)) for i in range(grid)]
    side = int(round(2 * stride))
    boxes = [(x, y, x + side, y + side) for y in starts for x in starts]
    class_probability = np.maximum(probabilities([None] + boxes)[:, class_index], 1e-12)
    # Log-probabilities: a confident model's probability barely moves, its log-probability does.
    drops = np.maximum(np.log(class_probability[0]) - np.log(class_probability[1:]), 0.0)
    heat, cover = np.zeros((size, size), np.float32), np.zeros((size, size), np.float32)
    for (x0, y0, x1, y1), drop in zip(boxes, drops):
        heat[y0:y1, x0:x1] += drop
        cover[y0:y1, x0:x1] += 1
    heat = cv2.GaussianBlur(heat / np.maximum(cover, 1), (0, 0), stride / 2)
    return _normalised(heat)


def _filled(image, box, fill=OCCLUSION_FILL):
    if box is None:
        return image
    x0, y0, x1, y1 = box
    copy = image.copy()
    copy[y0:y1, x0:x1] = fill
    return copy


def _normalised(heat):
    heat = np.asarray(heat, dtype=np.float32)
    top = heat.max()
    return heat / top if top > 0 else heat


def scale_colours(heat):
    """Return the RGB colour of every map value, interpolated between the COLOUR_SCALE stops."""
    stops = np.array([value for value, _ in COLOUR_SCALE])
    channels = np.array([colour for _, colour in COLOUR_SCALE], np.float32)
    return np.stack([np.interp(heat, stops, channels[:, c]) for c in range(3)], axis=-1)


def overlay_png(crop, heat):
    """Return the crop with only its strongest regions coloured (a scale's colour over the untinted face), as PNG."""
    opacity = OPACITY * np.clip((heat - SHOWN_FROM) / FADE_IN, 0, 1)[..., np.newaxis]
    blended = crop * (1 - opacity) + scale_colours(heat) * opacity
    return encode_png(np.clip(np.round(blended), 0, 255).astype(np.uint8))
