"""Why a model said what it said: Grad-CAM for VGG16 backbones, occlusion sensitivity for any backbone."""
import cv2
import numpy as np
import tensorflow as tf

from ml.images import encode_png

LAST_CONV = "block5_conv3"
OCCLUSION_GRID = 6         # 6 x 6 positions of a patch a quarter of the face wide: 36 extra predictions
OCCLUSION_PATCH = 0.25
OVERLAY_WEIGHT = 0.45


def explain(loaded, crop, class_index):
    """Return (heat map in [0, 1] over the crop, method name) for the class a model chose."""
    if hasattr(loaded.backbone, "base"):
        return grad_cam(loaded.backbone, loaded.head, crop, class_index), "grad-cam"
    # Uncalibrated probabilities: a temperature below 1 can round a confident one to exactly 1.
    return occlusion_map(crop, lambda batch: loaded.probabilities(batch, reference=crop, calibrated=False),
                         class_index), "occlusion"


def grad_cam(backbone, head, crop, class_index):
    """Grad-CAM on VGG16's last convolution: where the evidence for `class_index` lies."""
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


def occlusion_map(crop, probabilities, class_index, grid=OCCLUSION_GRID, patch=OCCLUSION_PATCH):
    """Grey out one patch at a time; where the class's (log-)probability drops most is what it relied on."""
    size = crop.shape[0]
    side = int(round(size * patch))
    starts = np.linspace(0, size - side, grid).round().astype(int)
    occluded, places = [], []
    for y in starts:
        for x in starts:
            copy = crop.copy()
            copy[y:y + side, x:x + side] = 127
            occluded.append(copy)
            places.append((y, x))
    # Log-probabilities: a confident model's probability barely moves, its log-probability does.
    reference = np.log(max(probabilities(crop[np.newaxis])[0, class_index], 1e-12))
    drops = reference - np.log(np.maximum(probabilities(np.stack(occluded))[:, class_index], 1e-12))
    heat, cover = np.zeros(crop.shape[:2]), np.zeros(crop.shape[:2])
    for (y, x), drop in zip(places, drops):
        heat[y:y + side, x:x + side] += max(float(drop), 0.0)
        cover[y:y + side, x:x + side] += 1
    return _normalised(heat / np.maximum(cover, 1))


def _normalised(heat):
    heat = np.asarray(heat, dtype=np.float64)
    top = heat.max()
    return heat / top if top > 0 else heat


def overlay_png(crop, heat):
    """Return the crop with the heat map blended over it, as PNG bytes."""
    colours = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)
    colours = cv2.cvtColor(colours, cv2.COLOR_BGR2RGB)
    blended = cv2.addWeighted(crop, 1 - OVERLAY_WEIGHT, colours, OVERLAY_WEIGHT, 0)
    return encode_png(blended)
