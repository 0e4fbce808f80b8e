"""Training: features of every face from its blocks (cached), a head on top, and an honest evaluation.

Linear and SVM heads are evaluated by stratified k-fold cross-validation (grouped by person when
the dataset names them); with `auto` the pipeline is chosen by nested cross-validation among
the candidates (see ml/learning/pipelines.py), and the classical baseline is always scored on the same
folds. The softmax head is cross-validated the same way; fine-tuning runs keep one held-out
test split, which is faster, and say so. The final model is trained on all images.
"""
import functools
import json
import platform
import resource
import time
from dataclasses import asdict, replace

import cv2
import keras
import numpy as np
import sklearn
import tensorflow as tf

from ml.errors import TrainingError
from ml.features.availability import unavailable_pipelines
from ml.features.dlib_resnet import DlibResnet
from ml.features.extractor import FaceFeatures, build_extractor
from ml.features.face_models import face_network
from ml.learning.calibration import apply_temperature, choose_temperature, choose_thresholds
from ml.learning.cases import GallerySource, build_gallery, case_figures
from ml.learning.card_figures import baseline_predictions, baseline_scores, calibration_figures, clinical_metrics
from ml.learning.evaluation import cross_validation_folds, evaluate, summarize
from ml.learning.feature_cache import batch_size, block_features, uncached
from ml.learning.fine_tuning import save_fine_tuned
from ml.learning.heads import LinearHead, SoftmaxHead
from ml.learning.novelty import Novelty
from ml.learning.options import FINE_TUNABLE, PIPELINES, is_vgg16
from ml.learning.pipelines import (
    BASELINE,
    Candidate,
    Choice,
    Counter,
    candidates_for,
    choose,
    fold_accuracies,
    folds_so_far,
)
from ml.learning.run_plan import RunPlan, vgg_sizes
from ml.photos.faces import CROP_SIZE
from ml.progress import Progress
from ml.versions.card import ModelCard

FEATURES_DIR = "features"


def candidate_pipelines(options, pretrained_dirs=()):
    """Return the pipelines a run compares: every usable one for `auto`, else the one asked for."""
    if options.backbone != "auto":
        return [options.backbone]
    unusable = unavailable_pipelines(PIPELINES, pretrained_dirs)
    return [name for name in PIPELINES if name not in unusable]


def train(dataset, options, registry, pretrained_dirs=(), progress=None):
    """Train a model on `dataset`, evaluate it honestly and save it as a new (inactive) version.

    `progress` receives a Progress record at every step; raising ml.progress.Cancelled from it
    stops the run, and nothing is written.
    """
    started = time.monotonic()
    keras.utils.set_random_seed(options.seed)       # first: random backbone weights (tests) depend on it too
    pipelines = candidate_pipelines(options, pretrained_dirs)
    if options.backbone == "auto" and options.head == "softmax":
        raise TrainingError("auto compares linear pipelines; choose a backbone for the softmax head.")
    if options.fine_tune_epochs and not (len(pipelines) == 1 and pipelines[0] in FINE_TUNABLE):
        raise TrainingError(f"The {options.backbone} backbone cannot be fine-tuned; set fine_tune_epochs to 0 "
                            f"(fine-tunable: {', '.join(FINE_TUNABLE)}).")
    report = progress_reporter(RunPlan.for_run(options, *dataset.labels_and_subjects(), pipelines,
                                               run_candidates(pipelines, options), vgg_sizes(pipelines, options)),
                               progress)
    blocks = list(dict.fromkeys([b for p in pipelines for b in p.split("+")] + list(BASELINE.blocks)))
    extractors = load_networks(blocks, options, pretrained_dirs, dataset, report)
    report(Progress("loading"))
    whole, dataset = dataset, classifier_part(dataset)
    all_crops, all_labels, digests, all_groups = whole.load_crops()
    rows = whole.classifier_rows()
    crops, groups = all_crops[rows], None if all_groups is None else [all_groups[i] for i in rows]
    labels = np.array([item["label"] for item in dataset.manifest.images], dtype=int)
    n_classes = len(dataset.labels)
    if np.bincount(labels, minlength=n_classes).min() < 3:
        raise TrainingError("Every class needs at least 3 photos for an evaluation.")
    all_features = block_features(blocks, extractors, all_crops, digests, whole.path / FEATURES_DIR, report)
    features = {name: vectors[rows] for name, vectors in all_features.items()}
    attributes = dataset.attributes()
    source = GallerySource(whole, all_crops, all_labels, all_groups, lambda extractor, names: np.concatenate(
        [all_features[name] for name in names], axis=1))
    if options.fine_tune_epochs:
        # The face network is this version's own copy: fine-tuning changes its tail, and so the gallery's vectors.
        backbone = extractors.get(pipelines[0]) or FaceFeatures(["dlib-face"], DlibResnet())
        tuned = replace(source, vectors=lambda extractor, names: extractor.features(all_crops))
        return save_fine_tuned(dataset, options, registry, backbone, crops, features, labels, attributes, started,
                               report, functools.partial(_save, source=tuned))
    if options.head == "softmax":
        choice = _softmax_cv(features, labels, groups, pipelines[0], n_classes, options, report)
        selection = "fixed"
    else:
        candidates = run_candidates(pipelines, options)
        choice = choose(features, labels, groups, candidates, options, report)
        selection = "nested cross-validation" if len(candidates) > 1 else "fixed"
    chosen, folds, served = choice.winner, choice.folds, choice.served_predictions
    report(Progress("evaluating"))
    metrics, calibrated, temperature = assess(choice.outer_predictions, labels, folds, dataset.labels, attributes,
                                              choice.baseline_predictions, served)
    metrics.update(method="cross-validation", folds=len(folds), grouped=choice.grouped, note=_cv_note(
        len(folds), choice.grouped, options.backbone == "auto"), candidates=choice.candidates,
        chosen_per_fold=choice.chosen_per_fold, selection=selection)
    report(Progress("final head"))
    extractor = extractors.get(chosen.pipeline) or build_extractor("+".join(chosen.blocks), options, pretrained_dirs)
    x = np.concatenate([features[name] for name in chosen.blocks], axis=1)
    sizes = [features[name].shape[1] for name in chosen.blocks]
    if options.head == "softmax":
        head = SoftmaxHead(n_classes, options)
        history = head.fit(x, labels, report)
    else:
        head, history = LinearHead.fit(x, labels, sizes, chosen, n_classes, options.seed), []
        report(Progress("final head", done=1, total=3))
    novelty = Novelty.fit_with_threshold(x, sizes, folds, chosen.blocks)
    report(Progress("final head", done=2, total=3))
    # The served model is the winner retrained on all photos: its thresholds come from the
    # winner's own out-of-fold predictions, not from those of whichever candidate each fold chose.
    thresholds = choose_thresholds(apply_temperature(served, temperature), labels, options.min_coverage)
    report(Progress("final head", done=3, total=3))
    pipeline = {"name": chosen.pipeline, "blocks": list(chosen.blocks), "block_sizes": sizes, "head": chosen.head,
                "C": chosen.C}
    return _save(dataset, options, registry, extractor, head, novelty, pipeline, history, metrics, temperature,
                 thresholds, calibrated, labels, started, report, source=source)


def classifier_part(dataset):
    """Return the part of a dataset the classifier learns (without its gallery-only classes), or refuse to train."""
    part = dataset.classifier_part()
    if len(part.labels) < 2:
        raise TrainingError(f"Dataset {dataset.id} has fewer than two classes with enough photos for a classifier; "
                            f"{', '.join(dataset.manifest.gallery_only or ())} are gallery-only. Add photos first.")
    return part


def run_candidates(pipelines, options):
    """Return the candidates a linear run compares (auto adds the classical baseline: it must never end below it)."""
    candidates = [c for p in pipelines for c in candidates_for(p, options.head, options.regularization)]
    if options.backbone == "auto":
        candidates.append(BASELINE)
    return candidates


def load_networks(blocks, options, pretrained_dirs, dataset, report):
    """Build the VGG16 extractors (first: failing fast on missing weights) and make every source of features ready.

    These are the steps of start-up: each VGG16 network, the face network's three, then each face
    block. A source that has photos to compute computes a batch of blank crops, which loads its
    models and prepares its batches: the first photos then take only their own time. Return the
    VGG16 extractors by name.
    """
    vgg = [name for name in blocks if is_vgg16(name)]
    face_blocks = [name for name in blocks if not is_vgg16(name)]
    digests = [item["sha256"] for item in dataset.manifest.images]
    steps = Counter(len(vgg) + 3 * ("dlib-face" in face_blocks) + len(face_blocks))

    def step():
        steps.done += 1
        report(Progress("starting", done=steps.done, total=steps.total))

    def blank(extractor):           # a batch of the size the source computes, or None: nothing to compute
        missing = uncached(extractor, digests, dataset.path / FEATURES_DIR)
        return np.full((batch_size(missing), CROP_SIZE, CROP_SIZE, 3), 127, np.uint8) if missing else None
    report(Progress("starting", done=0, total=steps.total))
    extractors = {}
    for name in vgg:
        extractors[name] = build_extractor(name, options, pretrained_dirs)
        if (crops := blank(extractors[name])) is not None:
            extractors[name].block_features(crops)
        step()
    if "dlib-face" in face_blocks:
        face_network().model(step)
        steps.done = len(vgg) + 3           # when an earlier run of this process loaded it already
    if face_blocks:
        face = FaceFeatures(face_blocks)
        if (crops := blank(face)) is not None:
            face.prepare(crops, step)
        else:
            report(Progress("starting", done=steps.total, total=steps.total))
    return extractors


# What cross-validation found so far: every later step repeats it, so the latest record alone shows it all.
SCORES_SO_FAR = ("fold_accuracies", "baselines", "candidates")


def progress_reporter(plan, progress):
    """Return the callback the steps report to: it sends `progress` each step as a Progress with its share of the
    run done (from `plan`, a RunPlan)."""
    if progress is None:
        return lambda step: None
    scores = {}

    def report(step):
        scores.update((key, getattr(step, key)) for key in SCORES_SO_FAR if getattr(step, key) is not None)
        if not step.curve_point:            # an epoch of a curve is kept in the history: without them
            step = step.replace(**{key: value for key, value in scores.items() if getattr(step, key) is None})
        progress(step.replace(fraction=plan.advance(step)))
    return report


def _softmax_cv(features, labels, groups, pipeline, n_classes, options, report):
    """Cross-validate the softmax head on one pipeline; return the Choice, as `choose` does for linear heads."""
    candidate = Candidate(tuple(pipeline.split("+")), "softmax", None)
    folds, grouped, n_folds = cross_validation_folds(labels, groups, options.folds, options.seed)
    x = np.concatenate([features[name] for name in candidate.blocks], axis=1)
    raw = np.zeros((len(labels), n_classes))
    baseline = baseline_predictions(features, labels, folds, n_classes, options)
    for number, (train_idx, test_idx) in enumerate(folds, 1):
        def fold_report(epoch, number=number):      # epochs inside a fold: progress only, no curves
            report(Progress("cross-validation", fold=number, folds=n_folds, fold_epoch=epoch.epoch,
                            fold_epochs=epoch.epochs))
        report(Progress("cross-validation", fold=number, folds=n_folds))
        head = SoftmaxHead(n_classes, options)
        head.fit(x[train_idx], labels[train_idx], fold_report)
        raw[test_idx] = head.probabilities(x[test_idx])
        report(Progress("cross-validation", fold=number, folds=n_folds, fold_epoch=options.epochs,
                        fold_epochs=options.epochs,   # the fold's epochs are over (early stopping may end them sooner)
                        **folds_so_far(raw, baseline, labels, folds[:number])))
    accuracies = fold_accuracies(raw, labels, folds)
    candidates = [{"pipeline": pipeline, "head": "softmax", "C": None, "accuracy": float(np.mean(accuracies)),
                   "accuracy_std": float(np.std(accuracies)), "seconds": None, "chosen": True}]
    return Choice(candidate, raw, raw, accuracies, None, candidates, baseline, folds, grouped)


def _cv_note(n_folds, grouped, auto):
    note = f"{n_folds}-fold stratified cross-validation" + (
        ", grouped by person" if grouped else ", not grouped by person (no subjects given)")
    if auto:
        note += "; the pipeline was chosen inside each training fold by an inner cross-validation, so the " \
                "score includes the choice"
    return note + "; the final model is trained on all images"


def assess(raw, labels, folds, label_names, attributes, baseline, served):
    """Return (metrics, calibrated out-of-fold probabilities, temperature) from out-of-fold predictions.

    `raw` are the honest (nested) out-of-fold predictions the figures come from; `served` are
    the served configuration's own, which the temperature and its calibration figures describe.
    """
    temperature, _, ece_crossed = choose_temperature(served, labels, folds)
    calibrated = apply_temperature(raw, temperature)
    fold_metrics = [evaluate(labels[test], calibrated[test], label_names) for _, test in folds]
    metrics = summarize(fold_metrics, labels, calibrated, label_names)
    metrics["baselines"] = baseline_scores(baseline, labels, folds, len(label_names))
    metrics.update(clinical_metrics(labels, calibrated.argmax(axis=1), label_names, attributes,
                                    metrics["baselines"]["majority"]["accuracy"]))
    metrics["calibration"] = calibration_figures(served, apply_temperature(served, temperature), labels, temperature,
                                                 ece_crossed, (
        "the served configuration's out-of-fold predictions; applied because it lowered the expected calibration "
        "error of folds it was not fitted on" if temperature != 1.0 else
        "not applied: temperature scaling did not lower the expected calibration error of folds it was not "
        "fitted on"))
    return metrics, calibrated, temperature


def _save(dataset, options, registry, extractor, head, novelty, pipeline, history, metrics, temperature,
          thresholds, calibrated, labels, started, report, only=None, source=None):
    report(Progress("saving"))
    gallery, described, sweep = build_gallery(source, extractor, pipeline["blocks"], pipeline["block_sizes"],
                                              options.nearest_cases)
    metrics = dict(metrics, cases=case_figures(sweep, source, calibrated, thresholds, options.nearest_cases))
    card = ModelCard(
        labels=dataset.labels,
        backbone=extractor.describe(),
        pipeline=pipeline,
        head=pipeline["head"],
        image_size=extractor.input_size,
        face=dataset.manifest.face,
        dataset={"id": dataset.id, "checksum": dataset.manifest.checksum, "images": len(labels)},
        options=asdict(options),
        history=history,
        metrics=metrics,
        calibration={"temperature": temperature},
        abstention=thresholds,
        novelty=novelty.card_entry() if novelty is not None else None,
        training_seconds=round(time.monotonic() - started, 1),
        training_peak_memory_mib=peak_memory_mib(),
        software=software_versions(),
        gallery=described,
    )
    in_dataset = source.dataset.classifier_rows()        # a photo's place among all the dataset's photos
    evaluation = [{"image": int(in_dataset[i]), "file": dataset.manifest.images[i]["file"], "label": int(labels[i]),
                   "probabilities": [round(float(p), 6) for p in calibrated[i]]}
                  for i in (range(len(labels)) if only is None else only)]

    def write(folder):
        (folder / "evaluation.json").write_text(json.dumps(evaluation))
        report(Progress("saving", done=1, total=4))
        files = extractor.save(folder)
        report(Progress("saving", done=2, total=4))
        files += head.save(folder) + gallery.save(folder) + ["evaluation.json"]
        report(Progress("saving", done=3, total=4))
        return files + (novelty.save(folder) if novelty is not None else [])
    version = registry.save(card, write)
    report(Progress("saving", done=4, total=4))
    report(Progress("saved"))
    return version


def peak_memory_mib():
    """Return the peak resident memory of this process so far, in MiB (what a training run needed)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)     # KiB on Linux


def software_versions():
    """Return the versions of the libraries a model depends on, for its card."""
    return {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": np.__version__, "scikit-learn": sklearn.__version__, "opencv": cv2.__version__}
