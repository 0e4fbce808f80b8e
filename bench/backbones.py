"""Backbones and heads on real faces: cross-validated accuracy, feature speed, head retraining time.

Runs on the research-only UTKFace sample in ../shared/data/utkface_age (child vs adult, 300
tightly cropped photos, no person ids: folds are not grouped). Every backbone usable on this
machine is tried with both heads; VGG16 feature speed is also measured with random weights.
Usage: .venv/bin/python -m bench.backbones [DIR] [--folds 5]
"""
import argparse
import tempfile
import time
from pathlib import Path

from bench.face_detectors import DEFAULT_DIR
from ml.backbones import BACKBONES, availability, build_backbone
from ml.datasets import import_dataset
from ml.faces import FaceOptions
from ml.registry import ModelRegistry
from ml.options import TrainingOptions
from ml.training import train

PRETRAINED = [str(Path(__file__).resolve().parents[1] / "models" / "pretrained")]


def feature_speed(name, weights, crops):
    """Return images per second of one backbone's feature extraction (after a warm-up batch)."""
    backbone = build_backbone(name, weights, 224, PRETRAINED)
    backbone.features(crops[:4])
    start = time.perf_counter()
    backbone.features(crops)
    return len(crops) / (time.perf_counter() - start)


def main():
    """Print the accuracy table and the speed table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default=str(DEFAULT_DIR))
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        # Tight crops: a photo in which even the bordered retry finds no face is used whole.
        dataset = import_dataset(Path(args.folder), "utkface", work / "datasets", face=FaceOptions("mtcnn", "whole"))
        crops, _, _, _ = dataset.load_crops()
        whole = sum(1 for item in dataset.manifest["images"] if item["face"] == "whole-image")
        print(f"{len(crops)} photos ({dataset.manifest['counts']}), {whole} used whole (no face found)")
        usable = [name for name, reason in availability(PRETRAINED).items() if reason is None]
        print(f"{'backbone':<16} {'head':<8} {'accuracy':>15} {'macro F1':>15} {'HOG+SVM':>15} "
              f"{'majority':>9} {'seconds':>8} {'warm s':>7}")
        for name in [b for b in BACKBONES if b in usable]:
            for head in ("linear", "softmax"):
                options = TrainingOptions(backbone=name, head=head, folds=args.folds)
                registry = ModelRegistry(work / "models")
                cold = train(dataset, options, registry, PRETRAINED)
                start = time.perf_counter()
                train(dataset, options, registry, PRETRAINED)          # features now come from the cache
                warm = time.perf_counter() - start
                m = cold.card["metrics"]
                hog, majority = m["baselines"]["hog-svm"], m["baselines"]["majority"]
                print(f"{name:<16} {head:<8} {m['accuracy']:>8.1%} ± {m['accuracy_std']:.1%} "
                      f"{m['macro_f1']:>8.1%} ± {m['macro_f1_std']:.1%} {hog['accuracy']:>8.1%} ± "
                      f"{hog['accuracy_std']:.1%} {majority['accuracy']:>9.1%} {cold.card['training_seconds']:>8.1f}"
                      f" {warm:>7.1f}")
        sample = crops[:64]
        print("feature extraction, images/s (64 crops, 2-core CPU):")
        for name, weights in (("dlib-face", "pretrained"), ("vgg16-imagenet", "none")):
            print(f"  {name:<16} {feature_speed(name, weights, sample):6.1f}"
                  + ("  (random weights: same cost as ImageNet's)" if weights == "none" else ""))
        print(f"  {'vggface':<16} same network as vgg16-imagenet")


if __name__ == "__main__":
    main()
