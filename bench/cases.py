"""Nearest validated cases on real faces: matching in the gallery against the classifier, and the time of a query.

Runs on the research-only UTKFace sample in ../shared/data/utkface_age turned into a many-class
set: one class per year of age, so that 23 of its 48 classes have 5 photos or more (the
classifier's) and 25 have 1 to 4 (gallery-only). It trains a dlib-face version and prints its card's figures:
leave-one-photo-out top-1/top-5 of matching for the frequent and the rare classes (the sample
names no people, so two photos of one person may match each other), the classifier's top-1/top-5
on the same frequent classes, and how often the true class is among the nearest cases when the
classifier abstains. Then it times one query against the version's gallery and against a gallery
of 5,000 cases (the real vectors, repeated with noise), beside the face descriptor of one photo
(the baseline: what every analysis computes anyway), in the same run.
Usage: .venv/bin/python -m bench.cases [DIR] [--work DIR] [--queries 200]
"""
import argparse
import csv
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.accuracy import PRETRAINED, imported
from bench.face_detectors import DEFAULT_DIR
from ml.learning.options import TrainingOptions
from ml.learning.training import train
from ml.serving.predictor import load_version
from ml.versions.gallery import CaseGallery
from ml.versions.registry import ModelRegistry

LARGE_GALLERY = 5000


def by_age_year(folder, target):
    """Copy the photos of `folder` into `target`, one class folder per year of age."""
    with open(folder / "manifest.csv", newline="") as manifest:
        for row in csv.DictReader(manifest):
            year = target / f"age-{int(row['age']):02d}"
            year.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / row["path"], year / Path(row["path"]).name)
    return target


def median_ms(call, repeats):
    """Return the median wall time of `call` in milliseconds, after one call to warm it."""
    call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def larger(gallery, size, seed=0):
    """Return a gallery of `size` cases: the real ones repeated, each copy moved a little and normalised again."""
    rng = np.random.default_rng(seed)
    picks = np.arange(size) % len(gallery)
    vectors = gallery.vectors[picks] + rng.normal(0, 0.05, (size, gallery.vectors.shape[1])).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return CaseGallery(gallery.labels, gallery.case_labels[picks], vectors, gallery.mean, gallery.scale,
                       gallery.columns, gallery.within[picks], gallery.persons[picks], gallery.gallery_only,
                       np.zeros(0), [])


def share(value):
    return "n/a" if value is None else f"{value:.1%}"


def print_figures(card):
    """Print the card's matching figures beside the classifier's, pooled over the frequent classes."""
    figures, gallery = card.metrics.cases, card.gallery
    rows = figures["per_condition"].values()
    frequent = [row for row in rows if not row["gallery_only"]]
    scored = sum(row["classifier_n"] for row in frequent)

    def pooled(key):
        return sum(row[key] * row["classifier_n"] for row in frequent if row[key] is not None) / max(scored, 1)
    print(f"gallery: {gallery['cases']} cases in {gallery['space']}; gallery-only: {len(gallery['gallery_only'])} "
          f"classes; matching scored {figures['evaluation']}")
    print(f"\n{'':<40} {'classes':>7} {'photos':>6} {'top-1':>7} {'top-5':>7}")
    for kind in ("frequent", "rare"):
        row = figures[kind]
        print(f"{'nearest cases, ' + kind:<40} {row['conditions']:>7} {row['n']:>6} {share(row['top1']):>7} "
              f"{share(row['top5']):>7}")
    print(f"{'classifier, frequent (' + card.metrics.method + ')':<40} {figures['frequent']['conditions']:>7} "
          f"{scored:>6} {share(pooled('classifier_top1')):>7} {share(pooled('classifier_top5')):>7}")
    abstained = figures["abstained"]
    print(f"classifier abstained on {abstained['n']} held-out photos; the true class was among the "
          f"{figures['k']} nearest cases for {abstained['found']} ({share(abstained['share'])})")


def print_timings(version, crop, queries):
    """Print the time of one query against the version's gallery and a 5,000-case one, beside the baseline."""
    loaded = load_version(version)
    features = loaded.backbone.features(crop[np.newaxis])
    k = version.card.gallery["k"]
    baseline = median_ms(lambda: loaded.backbone.features(crop[np.newaxis]), max(10, queries // 10))
    print(f"\nbaseline, the face descriptor of one photo: {baseline:.1f} ms")
    for gallery in (loaded.gallery, larger(loaded.gallery, LARGE_GALLERY)):
        spent = median_ms(lambda gallery=gallery: gallery.nearest(features, k), queries)
        print(f"nearest {k} of {len(gallery):>5} cases: {spent:.2f} ms per query "
              f"({spent / baseline:.1%} of the baseline){'; under 50 ms' if spent < 50 else '; OVER 50 ms'}")


def main():
    """Build the many-class set, train on it, print the figures and the timings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default=str(DEFAULT_DIR))
    parser.add_argument("--work", help="a folder to keep the imported dataset in between runs")
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.work or scratch)
        years = work / "age-years"
        if not years.is_dir():
            by_age_year(Path(args.folder), years)
        started = time.perf_counter()
        dataset = imported(years, work, "utkface-age-years")
        print(f"{len(dataset.manifest.images)} photos in {len(dataset.labels)} classes, "
              f"{len(dataset.manifest.gallery_only or ())} of them gallery-only (1-4 photos); "
              f"import {time.perf_counter() - started:.0f} s")
        started = time.perf_counter()
        version = train(dataset, TrainingOptions(backbone="dlib-face", folds=5), ModelRegistry(work / "models"),
                        PRETRAINED)
        print(f"training {time.perf_counter() - started:.0f} s")
        print_figures(version.card)
        print_timings(version, dataset.load_crops()[0][0], args.queries)


if __name__ == "__main__":
    main()
