"""What an explanation costs: one prediction, and its heat map as before and now, per pipeline.

Usage: .venv/bin/python -m bench.explanations   (uses the astronaut photo scikit-image ships)

"before" is the map face-block pipelines had: occlusion of 12 x 12 overlapping patches of the
aligned chip (144 more faces through every block). "now" is the map served: attribution for
face blocks under a linear head (one reading of the face, integrated gradients through the face
network's last stages), Grad-CAM for VGG16 (unchanged). "x pred." is now / prediction.
"""
import statistics
import tempfile
import time

import numpy as np
import skimage.data

from ml.features.extractor import build_extractor
from ml.learning.heads import LinearHead
from ml.learning.options import TrainingOptions
from ml.learning.pipelines import Candidate
from ml.photos.faces import FaceOptions, crop_face
from ml.serving.explain import GRID, chip_occlusion_map, explanation
from ml.serving.predictor import load_version
from ml.versions.card import ModelCard
from ml.versions.registry import ModelRegistry

PIPELINES = ("dlib-face", "dlib-face+hog+lbp+geometry", "hog", "vgg16-imagenet")


def version_for(pipeline, crops, root):
    """Save a two-class linear model on `pipeline` (fitted on shifted and flipped copies) and load it for serving."""
    backbone = build_extractor(pipeline, TrainingOptions(weights="none"))
    labels = np.arange(len(crops)) % 2
    candidate = Candidate(tuple(pipeline.split("+")), "linear", 1.0)
    head = LinearHead.fit(backbone.features(crops), labels, backbone.block_sizes, candidate, 2)
    card = ModelCard(labels=["a", "b"], head="linear", backbone=backbone.describe(),
                     pipeline={"name": pipeline, "blocks": list(candidate.blocks)},
                     face=FaceOptions("mtcnn").as_dict(), dataset={"id": "bench", "images": len(crops)},
                     metrics={"per_class": {}, "accuracy": 0.5, "macro_f1": 0.5},
                     abstention={"min_probability": 0.0, "min_margin": 0.0})
    return load_version(ModelRegistry(root).save(card, lambda folder: backbone.save(folder) + head.save(folder)))


def median_seconds(function, repeats=3):
    """Return the median time of `function` after one warm-up call."""
    function()
    return statistics.median(_timed(function) for _ in range(repeats))


def _timed(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main():
    """Print one row per pipeline: prediction time, and the map's time before and now."""
    crop = crop_face(skimage.data.astronaut(), FaceOptions("mtcnn")).image
    crops = np.stack([crop, crop[:, ::-1], np.roll(crop, 8, axis=0), np.roll(crop, 8, axis=1)])
    print(f"{'pipeline':<28} {'prediction':>11} {'map before':>11} {'map now':>9} {'x pred.':>8}  method")
    for name in PIPELINES:
        with tempfile.TemporaryDirectory() as root:
            loaded = version_for(name, crops, root)
            predict = median_seconds(lambda: loaded.probabilities(crop[np.newaxis]))
            explained = explanation(loaded, crop)             # the class the model names, as the page asks
            now = median_seconds(lambda: explanation(loaded, crop))
            if explained.method == "attribution":
                chip_occlusion_map(loaded, crop, 0)
                before = _timed(lambda: chip_occlusion_map(loaded, crop, 0))
                method = f"occlusion {GRID}x{GRID} of the chip -> attribution"
            else:
                before, method = now, f"{explained.method} (unchanged)"
            label = name + " 224px" if name.startswith("vgg") else name
            print(f"{label:<28} {predict * 1000:>9.0f}ms {before:>10.2f}s {now:>8.2f}s {now / predict:>7.1f}x  "
                  f"{method}", flush=True)


if __name__ == "__main__":
    main()
