"""Pipelines on real faces: every candidate's CV accuracy and time, `auto`'s nested figure, training times.

Runs on the research-only UTKFace sample in ../shared/data/utkface_age (child vs adult, 300
tightly cropped photos, no person ids: folds are not grouped). Training with `auto` runs twice:
with an empty feature cache, then with the cache the first run filled.
Usage: .venv/bin/python -m bench.accuracy [DIR] [--folds 5] [--work DIR (keeps the imported dataset)]
"""
import argparse
import shutil
import tempfile
import time
from pathlib import Path

from bench.face_detectors import DEFAULT_DIR
from ml.datasets import get_dataset, import_dataset
from ml.errors import DatasetNotFound
from ml.faces import FaceOptions
from ml.options import TrainingOptions
from ml.registry import ModelRegistry
from ml.training import FEATURES_DIR, train

PRETRAINED = [str(Path(__file__).resolve().parents[1] / "models" / "pretrained")]


def imported(folder, work):
    """Return the dataset imported from `folder` into `work` (imported once per work folder)."""
    try:
        return get_dataset(work / "datasets", "utkface")
    except DatasetNotFound:
        # Tight crops: a photo in which even the bordered retry finds no face is used whole.
        return import_dataset(folder, "utkface", work / "datasets", face=FaceOptions("mtcnn", "whole"))


def timed_training(dataset, options, registry):
    """Train once; return (model version, wall seconds)."""
    started = time.perf_counter()
    version = train(dataset, options, registry, PRETRAINED)
    return version, time.perf_counter() - started


def main():
    """Print the candidates table, the nested-CV figure and the training times."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default=str(DEFAULT_DIR))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--work", help="a folder to keep the imported dataset in between runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.work or scratch)
        started = time.perf_counter()
        dataset = imported(Path(args.folder), work)
        images = dataset.manifest["images"]
        whole = sum(1 for item in images if item["face"] == "whole-image")
        print(f"{len(images)} photos {dataset.manifest['counts']}; a face was detected in "
              f"{1 - whole / len(images):.1%} ({whole} used whole); import {time.perf_counter() - started:.0f} s")
        shutil.rmtree(dataset.path / FEATURES_DIR, ignore_errors=True)
        registry = ModelRegistry(work / "models")
        options = TrainingOptions(folds=args.folds)
        cold, cold_s = timed_training(dataset, options, registry)
        warm, warm_s = timed_training(dataset, options, registry)
        m = cold.card.metrics
        print(f"\n{'candidate pipeline':<28} {'head':<7} {'C':>6} {'CV accuracy':>15} {'CV seconds':>10}")
        for row in m["candidates"]:
            print(f"{row['pipeline']:<28} {row['head']:<7} {row['C']:>6g} "
                  f"{row['accuracy']:>8.1%} ± {row['accuracy_std']:.1%} {row['seconds']:>10.1f}"
                  f"{'  <- chosen' if row['chosen'] else ''}")
        print(f"\nauto (nested CV, the card's claim): {m['accuracy']:.1%} ± {m['accuracy_std']:.1%}; "
              f"chosen per outer fold: {', '.join(m['chosen_per_fold'])}")
        for name, b in m["baselines"].items():
            print(f"baseline {name}: {b['accuracy']:.1%} ± {b['accuracy_std']:.1%}")
        print(f"final pipeline {cold.card.pipeline['name']} (C {cold.card.pipeline['C']}); "
              f"calibration kept: {m['calibration']['kept']}; abstention {cold.card.abstention}")
        print(f"training with auto: {cold_s:.0f} s with an empty feature cache, {warm_s:.0f} s with a warm one "
              f"(warm run chose {warm.card.pipeline['name']})")


if __name__ == "__main__":
    main()
