"""What an explanation costs: one prediction with and without its heat map, per backbone.

Usage: .venv/bin/python -m bench.explanations   (uses the astronaut photo scikit-image ships)
"""
import statistics
import tempfile
import time

import numpy as np
import skimage.data

from ml.blocks import build_extractor
from ml.explain import explain
from ml.faces import FaceOptions, crop_face
from ml.heads import LinearHead
from ml.predictor import load_version
from ml.registry import ModelRegistry
from ml.options import TrainingOptions
from ml.pipelines import Config


def version_for(pipeline, crops, root):
    """Save a two-class linear model on `pipeline` (fitted on flipped copies) and load it for serving."""
    backbone = build_extractor(pipeline, TrainingOptions(weights="none"))
    labels = np.arange(len(crops)) % 2
    config = Config(tuple(pipeline.split("+")), "linear", 1.0)
    head = LinearHead.fit(backbone.features(crops), labels, backbone.block_sizes, config, 2)
    card = {"labels": ["a", "b"], "head": "linear", "backbone": backbone.describe(),
            "pipeline": {"name": pipeline, "blocks": list(config.blocks)}, "calibration": {"temperature": 1.0}}
    return load_version(ModelRegistry(root).save(card, lambda folder: backbone.save(folder) + head.save(folder)))


def median_seconds(function, repeats=5):
    """Return the median time of `function` after one warm-up call."""
    function()
    return statistics.median(_timed(function) for _ in range(repeats))


def _timed(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main():
    """Print one row per backbone: prediction time and explanation time."""
    crop = crop_face(skimage.data.astronaut(), FaceOptions("mtcnn")).image
    crops = np.stack([crop, crop[:, ::-1], np.roll(crop, 8, axis=0), np.roll(crop, 8, axis=1)])
    print(f"{'pipeline':<28} {'prediction':>11} {'explanation':>12} {'method':>10}")
    for name in ("vgg16-imagenet", "dlib-face", "dlib-face+hog+lbp+geometry"):
        with tempfile.TemporaryDirectory() as root:
            loaded = version_for(name, crops, root)
            predict = median_seconds(lambda: loaded.probabilities(crop[np.newaxis]))
            explaining = median_seconds(lambda: explain(loaded, crop, 0))
            print(f"{name + ' 224px' if name == 'vgg16-imagenet' else name:<28} {predict * 1000:>9.0f}ms "
                  f"{explaining * 1000:>10.0f}ms {explain(loaded, crop, 0)[1]:>10}")


if __name__ == "__main__":
    main()
