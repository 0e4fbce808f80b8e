"""Refusing well, measured: the face gate on real faces, novelty on held-out and unlike faces, coverage kept.

Runs on the research-only UTKFace sample in ../shared/data/utkface_age (150 children, 150
adults, tight crops) and on the non-face gallery of bench/non_faces.py. It prints:
- the face gate: the share of real faces that pass it, as detected and used whole, its time;
- for each kind of model (faces detected: `auto`, and the descriptor alone; photos used whole):
  the share of the non-face gallery refused, and on held-out faces (k-fold: a model per fold,
  trained on the others) the share flagged as unlike the training photos, the share answered
  against the coverage the card claims;
- a model of children only (babies 0-2 against children 3-12): the share of adults flagged.
Usage: .venv/bin/python -m bench.refusal [DIR] [--folds 3]
"""
import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold

from bench.face_detectors import DEFAULT_DIR, read_manifest
from bench.non_faces import non_faces
from ml.datasets import get_dataset, import_dataset
from ml.errors import DatasetNotFound, NoFaceFound
from ml.learning.options import TrainingOptions
from ml.learning.training import FEATURES_DIR, train
from ml.photos.face_gate import judge_face
from ml.photos.faces import FaceOptions, crop_face, whole_photo
from ml.photos.images import decode_image
from ml.photos.quality import UnusablePhoto
from ml.serving.predictor import RETAKE, UNLIKE_FACES, UNLIKE_TRAINING, Predictor
from ml.versions.registry import ModelRegistry

KINDS = {"faces detected, auto": (FaceOptions("mtcnn", "none"), "auto"),
         "faces detected, dlib-face": (FaceOptions("mtcnn", "none"), "dlib-face"),
         "photos used whole, auto": (FaceOptions("mtcnn", "whole"), "auto")}


def gate_figures(folder, rows):
    """Print the share of real faces the gate passes, as the import crops them and used whole, and its time."""
    passed = {"as imported": [], "used whole": []}
    seconds = []
    for row in rows:
        rgb = decode_image((folder / row["path"]).read_bytes())
        try:
            passed["as imported"].append(crop_face(rgb, FaceOptions("mtcnn", "whole")) is not None)
        except NoFaceFound:
            passed["as imported"].append(False)
        image = None
        try:
            image = whole_photo(rgb).image
            passed["used whole"].append(True)
        except NoFaceFound:
            passed["used whole"].append(False)
        if image is not None:
            started = time.perf_counter()
            judge_face(image)
            seconds.append(time.perf_counter() - started)
    for name, flags in passed.items():
        print(f"face gate, real faces {name}: {np.mean(flags):.1%} pass ({len(flags) - sum(flags)} of {len(flags)} "
              "refused)")
    print(f"face gate time: {1000 * np.median(seconds):.1f} ms per crop (median)")


def subset_folder(folder, rows, work, name, label_of):
    """Lay out `rows` as a dataset folder (one folder per label_of(row)) of copies of the photos; return it."""
    target = work / name
    shutil.rmtree(target, ignore_errors=True)
    for row in rows:
        (target / label_of(row)).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / row["path"], target / label_of(row) / Path(row["path"]).name)
    return target


def trained_on(folder, rows, work, name, face, backbone, label_of=lambda row: row["label"]):
    """Import `rows` (once per work folder) and train a model on them; return (a Predictor serving it, its version)."""
    try:
        dataset = get_dataset(work / "datasets", name)
    except DatasetNotFound:
        dataset = import_dataset(subset_folder(folder, rows, work, name, label_of), name, work / "datasets",
                                 face=face)
    shared = work / "features"          # features are cached by the crop's digest: every subset shares them
    if shared.is_dir():
        shutil.copytree(shared, dataset.path / FEATURES_DIR, dirs_exist_ok=True)
    registry = ModelRegistry(work / "models" / name)
    version = train(dataset, TrainingOptions(backbone=backbone, folds=5), registry)
    shutil.copytree(dataset.path / FEATURES_DIR, shared, dirs_exist_ok=True)
    registry.activate(version.version)
    return Predictor(registry, batch_window_ms=0), version


def outcome(predictor, rgb):
    """Return what became of a photo: 'refused' (no face), 'unlike' (novelty), 'retake' (photo quality),
    'uncertain' (the card's thresholds) or 'answered'."""
    try:
        result = predictor.predict_image(rgb)
    except (NoFaceFound, UnusablePhoto):
        return "refused"
    reasons = result.abstention_reasons
    if UNLIKE_FACES in reasons or UNLIKE_TRAINING in reasons:
        return "unlike"
    if any(reason.startswith(RETAKE) for reason in reasons):
        return "retake"
    return "uncertain" if result.abstained else "answered"


def share(outcomes, *kinds, among=None):
    """Return the share of `outcomes` in `kinds`, counting only those in `among` (default: all)."""
    counted = [o for o in outcomes if among is None or o in among]
    return np.mean([o in kinds for o in counted]) if counted else float("nan")


def kind_figures(folder, rows, work, n_folds, gallery):
    """Print, per kind of model, the non-face gallery refused and held-out faces flagged, answered vs claimed."""
    labels = [row["label"] for row in rows]
    print(f"\n{'model kind':<28} {'non-faces refused':>17} {'held-out: unlike':>17} {'retake':>7} "
          f"{'answered by the thresholds':>27} {'card claims':>11} {'answered in all':>15}")
    for kind, (face, backbone) in KINDS.items():
        held, claimed, refused_gallery = [], [], []
        for number, (train_idx, test_idx) in enumerate(
                StratifiedKFold(n_folds, shuffle=True, random_state=0).split(rows, labels)):
            name = f"{kind.replace(' ', '-').replace(',', '')}-{number}"
            predictor, version = trained_on(folder, [rows[i] for i in train_idx], work, name, face, backbone)
            claimed.append(version.card.abstention["coverage"])
            held += [outcome(predictor, decode_image((folder / rows[i]["path"]).read_bytes())) for i in test_idx]
            if number == 0:
                refused_gallery = [outcome(predictor, picture) for picture in gallery.values()]
        judged = ("uncertain", "answered")        # photos the thresholds decided on, as the card's claim counts
        print(f"{kind:<28} {share(refused_gallery, 'refused'):>17.1%} {share(held, 'unlike'):>17.1%} "
              f"{share(held, 'retake'):>7.1%} {share(held, 'answered', among=judged):>27.1%} "
              f"{np.mean(claimed):>11.1%} {share(held, 'answered'):>15.1%}   (held-out refused: no face found "
              f"{share(held, 'refused'):.1%}; non-faces answered {share(refused_gallery, 'answered'):.0%})")


def population_figures(folder, rows, work):
    """Print the share of adults a model of children only flags as unlike its training photos."""
    children = [row for row in rows if row["label"] == "child"]
    adults = [row for row in rows if row["label"] == "adult"]
    predictor, version = trained_on(folder, children, work, "children-only", FaceOptions("mtcnn", "none"), "auto",
                                       label_of=lambda row: "baby" if int(row["age"]) <= 2 else "child")
    outcomes = [outcome(predictor, decode_image((folder / row["path"]).read_bytes())) for row in adults]
    print(f"\nchildren-only model ({version.card.pipeline['name']}): adults flagged as unlike the training photos "
          f"{share(outcomes, 'unlike'):.1%}, refused {share(outcomes, 'refused'):.1%}, answered "
          f"{share(outcomes, 'answered'):.1%} of {len(adults)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default=str(DEFAULT_DIR))
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--work", help="a folder to keep imported datasets and their features in between runs")
    args = parser.parse_args()
    folder = Path(args.folder)
    rows = read_manifest(folder)
    gallery = non_faces()
    print(f"{len(rows)} real faces; non-face gallery of {len(gallery)} pictures")
    gate_figures(folder, rows)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.work or scratch)
        kind_figures(folder, rows, work, args.folds, gallery)
        population_figures(folder, rows, work)


if __name__ == "__main__":
    main()
