"""Pipelines on real faces: every candidate's CV accuracy and time, `auto`'s nested figure, training times.

Runs on the research-only UTKFace sample in ../shared/data/utkface_age (child vs adult, 300
tightly cropped photos, no person ids: folds are not grouped); with --age-bands, on the same
photos in 7 classes of age (AGE_BANDS) from its manifest. Training with `auto` runs twice: with
an empty feature cache, then with the cache the first run filled. With --fine-tune N, it then
fine-tunes the face network (dlib-face, softmax head, N epochs) and prints that run's card figures.
Usage: .venv/bin/python -m bench.accuracy [DIR] [--folds 5] [--age-bands] [--fine-tune N] [--work DIR]
"""
import argparse
import csv
import shutil
import tempfile
import time
from pathlib import Path

from bench.face_detectors import DEFAULT_DIR
from ml.datasets import get_dataset, import_dataset
from ml.errors import DatasetNotFound
from ml.learning.options import TrainingOptions
from ml.learning.training import FEATURES_DIR, train
from ml.photos.faces import FaceOptions
from ml.versions.registry import ModelRegistry

PRETRAINED = [str(Path(__file__).resolve().parents[1] / "models" / "pretrained")]
# Ages (first, last) of the 7 classes of --age-bands: 35 to 54 photos each of the 300.
AGE_BANDS = ((0, 1), (2, 3), (4, 9), (10, 24), (25, 34), (35, 49), (50, 200))


def imported(folder, work, name="utkface"):
    """Return the dataset imported from `folder` into `work` (imported once per work folder)."""
    try:
        return get_dataset(work / "datasets", name)
    except DatasetNotFound:
        # Tight crops: a photo in which even the bordered retry finds no face is used whole.
        return import_dataset(folder, name, work / "datasets", face=FaceOptions("mtcnn", "whole"))


def by_age_band(folder, target):
    """Copy the photos of `folder` into `target`, one folder per AGE_BANDS class (the import takes no links)."""
    with open(folder / "manifest.csv", newline="") as manifest:
        for row in csv.DictReader(manifest):
            first, last = next(band for band in AGE_BANDS if band[0] <= int(row["age"]) <= band[1])
            band = target / (f"age-{first}-{last}" if last < 200 else f"age-{first}-plus")
            band.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / row["path"], band / Path(row["path"]).name)
    return target


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
    parser.add_argument("--age-bands", action="store_true", help="7 classes of age instead of child vs adult")
    parser.add_argument("--fine-tune", type=int, default=0, metavar="EPOCHS",
                        help="also fine-tune the face network for this many epochs")
    parser.add_argument("--work", help="a folder to keep the imported dataset in between runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.work or scratch)
        started = time.perf_counter()
        if args.age_bands:
            bands = work / "age-bands"
            if not bands.is_dir():
                by_age_band(Path(args.folder), bands)
            dataset = imported(bands, work, "utkface-age-bands")
        else:
            dataset = imported(Path(args.folder), work)
        images = dataset.manifest.images
        whole = sum(1 for item in images if item["face"] == "whole-image")
        print(f"{len(images)} photos {dataset.manifest.counts}; a face was detected in "
              f"{1 - whole / len(images):.1%} ({whole} used whole); import {time.perf_counter() - started:.0f} s")
        shutil.rmtree(dataset.path / FEATURES_DIR, ignore_errors=True)
        registry = ModelRegistry(work / "models")
        options = TrainingOptions(folds=args.folds)
        cold, cold_s = timed_training(dataset, options, registry)
        warm, warm_s = timed_training(dataset, options, registry)
        m = cold.card.metrics
        print(f"\n{'candidate pipeline':<28} {'head':<7} {'C':>6} {'CV accuracy':>15} {'CV seconds':>10}")
        for row in m.candidates:
            print(f"{row['pipeline']:<28} {row['head']:<7} {row['C']:>6g} "
                  f"{row['accuracy']:>8.1%} ± {row['accuracy_std']:.1%} {row['seconds']:>10.1f}"
                  f"{'  <- chosen' if row['chosen'] else ''}")
        print(f"\nauto (nested CV, the card's claim): {m.accuracy:.1%} ± {m.accuracy_std:.1%}; "
              f"chosen per outer fold: {', '.join(m.chosen_per_fold)}")
        for name, b in m.baselines.items():
            print(f"baseline {name}: {b['accuracy']:.1%} ± {b['accuracy_std']:.1%}")
        print(f"final pipeline {cold.card.pipeline['name']} (C {cold.card.pipeline['C']}); "
              f"calibration kept: {m.calibration['kept']}; abstention {cold.card.abstention}")
        print(f"training with auto: {cold_s:.0f} s with an empty feature cache, {warm_s:.0f} s with a warm one "
              f"(warm run chose {warm.card.pipeline['name']})")
        if args.fine_tune:
            fine_tuning(dataset, args.fine_tune, registry)


def fine_tuning(dataset, epochs, registry):
    """Fine-tune the face network's tail with a softmax head; print the card's held-out figures and the time."""
    options = TrainingOptions(backbone="dlib-face", head="softmax", fine_tune_epochs=epochs,
                              fine_tune_learning_rate=1e-4)
    version, seconds = timed_training(dataset, options, registry)
    m = version.card.metrics
    tuned = [e for e in version.card.history if e["phase"] == "fine-tune"]
    print(f"\nfine-tuned dlib-face ({len(tuned)} of {epochs} epochs, early stopping on validation loss): "
          f"{seconds:.0f} s; held-out test split of {m.split['test']} photos: accuracy {m.accuracy:.1%}, "
          f"macro F1 {m.macro_f1:.3f}; on the same split " + ", ".join(
              f"{name} {b['accuracy']:.1%}" for name, b in m.baselines.items()))


if __name__ == "__main__":
    main()
