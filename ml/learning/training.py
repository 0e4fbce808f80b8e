"""Training: features of every face from its blocks (cached), a head on top, and an honest evaluation.

Linear and SVM heads are evaluated by stratified k-fold cross-validation (grouped by person when
the dataset names them); with `auto` the pipeline is chosen by nested cross-validation among
the candidates (see ml/learning/pipelines.py), and the classical baseline is always scored on the same
folds. The softmax head is cross-validated the same way; fine-tuning runs keep one held-out
test split, which is faster, and say so. The final model is trained on all images.
"""
import json
import platform
import resource
import time
from dataclasses import asdict

import cv2
import keras
import numpy as np
import sklearn
import tensorflow as tf
from sklearn.model_selection import train_test_split

from ml.errors import TrainingError
from ml.features.availability import unavailable_pipelines
from ml.features.dlib_resnet import DlibResnet
from ml.features.extractor import FaceFeatures, build_extractor
from ml.features.vgg import unfreeze_last_block
from ml.learning.calibration import apply_temperature, choose_temperature, choose_thresholds, reliability
from ml.learning.evaluation import (
    clinical_figures,
    cross_validation_folds,
    evaluate,
    score_predictions,
    subgroup_figures,
    summarize,
    summarize_baseline,
    wilson_interval,
)
from ml.learning.heads import LinearHead, SoftmaxHead, class_weights, fit_with_progress
from ml.learning.novelty import Novelty
from ml.learning.options import FINE_TUNABLE, PIPELINES, VGG_BLOCKS
from ml.learning.pipelines import (
    BASELINE,
    Config,
    Grams,
    choose,
    configs_for,
    cv_predictions,
    fold_accuracies,
    folds_so_far,
)
from ml.progress import Progress
from ml.versions.card import ModelCard

FEATURES_DIR = "features"
MIXED_FLOAT16 = "mixed_float16"


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
    report = progress_reporter(options, progress)
    started = time.monotonic()
    keras.utils.set_random_seed(options.seed)       # first: random backbone weights (tests) depend on it too
    pipelines = candidate_pipelines(options, pretrained_dirs)
    if options.backbone == "auto" and options.head == "softmax":
        raise TrainingError("auto compares linear pipelines; choose a backbone for the softmax head.")
    extractors = {name: build_extractor(name, options, pretrained_dirs)      # fail fast on missing weights
                  for name in {p for p in pipelines if p in VGG_BLOCKS}}
    if options.fine_tune_epochs and not (len(pipelines) == 1 and pipelines[0] in FINE_TUNABLE):
        raise TrainingError(f"The {options.backbone} backbone cannot be fine-tuned; set fine_tune_epochs to 0 "
                            f"(fine-tunable: {', '.join(FINE_TUNABLE)}).")
    report({"phase": "loading"})
    crops, labels, digests, groups = dataset.load_crops()
    n_classes = len(dataset.labels)
    if np.bincount(labels, minlength=n_classes).min() < 3:
        raise TrainingError("Every class needs at least 3 photos for an evaluation.")
    blocks = list(dict.fromkeys([b for p in pipelines for b in p.split("+")] + list(BASELINE.blocks)))
    features = block_features(blocks, extractors, crops, digests, dataset.path / FEATURES_DIR, report)
    attributes = dataset.attributes()
    if options.fine_tune_epochs:
        # The face network is this version's own copy: fine-tuning changes its tail.
        backbone = extractors.get(pipelines[0]) or FaceFeatures(["dlib-face"], DlibResnet())
        return _save_fine_tuned(dataset, options, registry, backbone, crops, features, labels, attributes, started,
                                report)
    if options.head == "softmax":
        chosen, folds, grouped, raw, baseline, candidates = _softmax_cv(features, labels, groups, pipelines[0],
                                                                        n_classes, options, report)
        chosen_per_fold, selection, served = None, "fixed", raw
    else:
        configs = [c for p in pipelines for c in configs_for(p, options.head, options.regularization)]
        if options.backbone == "auto":
            configs.append(BASELINE)            # auto must never end below the product's own baseline
        choice = choose(features, labels, groups, configs, options, report)
        chosen, folds, grouped, raw = choice.config, choice.folds, choice.grouped, choice.outer_predictions
        served = choice.served_predictions
        baseline, candidates, chosen_per_fold = choice.baseline_predictions, choice.candidates, choice.chosen_per_fold
        selection = "nested cross-validation" if len(configs) > 1 else "fixed"
    metrics, calibrated, temperature = assess(raw, labels, folds, dataset.labels, attributes, baseline, served)
    metrics.update(method="cross-validation", folds=len(folds), grouped=grouped, note=_cv_note(
        len(folds), grouped, options.backbone == "auto"), candidates=candidates, chosen_per_fold=chosen_per_fold,
        selection=selection)
    report({"phase": "final head"})
    extractor = extractors.get(chosen.pipeline) or build_extractor("+".join(chosen.blocks), options, pretrained_dirs)
    x = np.concatenate([features[name] for name in chosen.blocks], axis=1)
    sizes = [features[name].shape[1] for name in chosen.blocks]
    if options.head == "softmax":
        head = SoftmaxHead(n_classes, options)
        history = head.fit(x, labels, report)
    else:
        head, history = LinearHead.fit(x, labels, sizes, chosen, n_classes, options.seed), []
    novelty = Novelty.fit_with_threshold(x, sizes, folds, chosen.blocks)
    # The served model is the winner retrained on all photos: its thresholds come from the
    # winner's own out-of-fold predictions, not from those of whichever candidate each fold chose.
    thresholds = choose_thresholds(apply_temperature(served, temperature), labels, options.min_coverage)
    pipeline = {"name": chosen.pipeline, "blocks": list(chosen.blocks), "block_sizes": sizes, "head": chosen.head,
                "C": chosen.C}
    return _save(dataset, options, registry, extractor, head, novelty, pipeline, history, metrics, temperature,
                 thresholds, calibrated, labels, started, report)


# What cross-validation found so far: every later step repeats it, so the latest record alone shows it all.
SCORES_SO_FAR = ("fold_accuracies", "baselines", "candidates")


def progress_reporter(options, progress):
    """Return the callback the steps report to: it sends `progress` each step as a Progress with its fraction."""
    if progress is None:
        return lambda event: None
    scores = {}

    def report(event):
        scores.update((key, event[key]) for key in SCORES_SO_FAR if key in event)
        if "epoch" not in event:            # an epoch of a curve is kept in the history: without them
            event = dict(scores, **event)
        progress(Progress.of(event, run_fraction(event, options)))
    return report


def run_fraction(event, options):
    """Estimate the share of the whole run done, 0..1, at a step event (features take about half of it)."""
    return round(_share_done(event, options), 4)       # sums of shares must not step back by a rounding error


def _share_done(event, options):
    phase = event["phase"]
    if phase == "features":                                         # each source of features in turn
        return 0.5 * (event.get("part", 0) + event["done"] / max(event["total"], 1)) / event.get("parts", 1)
    if phase == "cross-validation":
        within = event.get("fold_epoch", 0) / max(event.get("fold_epochs", 1), 1)
        return 0.55 + 0.15 * (event["fold"] - 1 + within) / event["folds"]
    if phase == "nested selection":                                 # auto: the choice inside each fold
        return 0.7 + 0.15 * (event["fold"] - 1) / event["folds"]
    if phase == "head" and not options.fine_tune_epochs:           # the final head, after cross-validation
        return 0.85 + 0.1 * event["epoch"] / options.epochs
    if phase in ("head", "fine-tune"):                             # held-out run with fine-tuning
        done = event["epoch"] + (options.epochs if phase == "fine-tune" else 0)
        return 0.55 + 0.4 * done / (options.epochs + options.fine_tune_epochs)
    return {"baselines": 0.5, "final head": 0.85, "evaluating": 0.95, "saving": 0.97, "saved": 1.0}.get(phase, 0.0)


def _softmax_cv(features, labels, groups, pipeline, n_classes, options, report):
    """Cross-validate the softmax head on one pipeline; return what `choose` returns for linear heads."""
    config = Config(tuple(pipeline.split("+")), "softmax", None)
    folds, grouped, n_folds = cross_validation_folds(labels, groups, options.folds, options.seed)
    x = np.concatenate([features[name] for name in config.blocks], axis=1)
    raw = np.zeros((len(labels), n_classes))
    baseline = baseline_predictions(features, labels, folds, n_classes, options)
    for number, (train_idx, test_idx) in enumerate(folds, 1):
        def fold_report(event, number=number):      # epochs inside a fold: progress only, no curves
            report({"phase": "cross-validation", "fold": number, "folds": n_folds,
                    "fold_epoch": event["epoch"], "fold_epochs": event["epochs"]})
        report({"phase": "cross-validation", "fold": number, "folds": n_folds})
        head = SoftmaxHead(n_classes, options)
        head.fit(x[train_idx], labels[train_idx], fold_report)
        raw[test_idx] = head.probabilities(x[test_idx])
        report({"phase": "cross-validation", "fold": number, "folds": n_folds, "fold_epoch": options.epochs,
                "fold_epochs": options.epochs,        # the fold's epochs are over (early stopping may end them sooner)
                **folds_so_far(raw, baseline, labels, folds[:number])})
    accuracies = fold_accuracies(raw, labels, folds)
    candidates = [{"pipeline": pipeline, "head": "softmax", "C": None, "accuracy": float(np.mean(accuracies)),
                   "accuracy_std": float(np.std(accuracies)), "seconds": None, "chosen": True}]
    return config, folds, grouped, raw, baseline, candidates


def baseline_predictions(features, labels, folds, n_classes, options):
    """Return the classical baseline's out-of-fold probabilities on the given folds."""
    grams = Grams({name: features[name] for name in BASELINE.blocks})
    return cv_predictions(grams, labels, folds, [BASELINE], n_classes, options.seed)[BASELINE]


def baseline_scores(predictions, labels, folds, n_classes):
    """Return accuracy and macro F1 (mean and std over the folds) of the majority class and the baseline."""
    majority = np.zeros((len(labels), n_classes))
    for train, test in folds:
        majority[test, np.bincount(labels[train], minlength=n_classes).argmax()] = 1.0
    return {name: summarize_baseline([score_predictions(labels[test], p[test].argmax(axis=1), n_classes)
                                      for _, test in folds])
            for name, p in (("majority", majority), (BASELINE.pipeline, predictions))}


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
        "the served configuration's out-of-fold predictions; kept only because it lowered the expected calibration "
        "error of folds it was not fitted on" if temperature != 1.0 else
        "not applied: temperature scaling did not lower the expected calibration error of folds it was not "
        "fitted on"))
    return metrics, calibrated, temperature


def clinical_metrics(labels, predicted, label_names, attributes, majority):
    """Return the card's sensitivity and specificity per condition, subgroup figures and usefulness flag."""
    correct = predicted == labels
    return {"clinical": clinical_figures(labels, predicted, label_names),
            "subgroups": subgroup_figures(correct, attributes),
            "usefulness": usefulness(int(np.sum(correct)), len(labels), majority)}


def calibration_figures(raw, calibrated, labels, temperature, ece_cross_fitted, fitted_on):
    """Return the card's calibration figures: ECE and reliability bins before and after, on the same photos."""
    ece_before, bins_before = reliability(raw, labels)
    ece_after, bins_after = reliability(calibrated, labels)
    return {"temperature": temperature, "kept": temperature != 1.0, "ece_before": ece_before, "ece_after": ece_after,
            "ece_cross_fitted": ece_cross_fitted, "reliability_before": bins_before,
            "reliability_after": bins_after, "fitted_on": fitted_on}


def usefulness(correct, n, majority):
    """Say whether a model beats always answering the most frequent condition by more than chance."""
    low, high = wilson_interval(correct, n)
    useful = low > majority
    return {"useful": bool(useful), "accuracy_low": low, "accuracy_high": high, "majority": majority,
            "note": "" if useful else (
                f"not useful: its accuracy (95% interval {low:.0%}-{high:.0%}) does not clearly beat always "
                f"answering the most frequent condition ({majority:.0%})")}


def _save(dataset, options, registry, extractor, head, novelty, pipeline, history, metrics, temperature,
          thresholds, calibrated, labels, started, report, only=None):
    report({"phase": "saving"})
    card = ModelCard(
        labels=dataset.labels,
        backbone=extractor.describe(),
        pipeline=pipeline,
        head=pipeline["head"],
        image_size=extractor.input_size,
        face=dataset.manifest["face"],
        dataset={"id": dataset.id, "checksum": dataset.manifest["checksum"], "images": len(labels)},
        options=asdict(options),
        history=history,
        metrics=metrics,
        calibration={"temperature": temperature},
        abstention=thresholds,
        novelty=novelty.card_entry() if novelty is not None else None,
        training_seconds=round(time.monotonic() - started, 1),
        training_peak_memory_mib=peak_memory_mib(),
        software=software_versions(),
    )
    evaluation = [{"image": int(i), "file": dataset.manifest["images"][i]["file"], "label": int(labels[i]),
                   "probabilities": [round(float(p), 6) for p in calibrated[i]]}
                  for i in (range(len(labels)) if only is None else only)]

    def write(folder):
        (folder / "evaluation.json").write_text(json.dumps(evaluation))
        files = extractor.save(folder) + head.save(folder) + ["evaluation.json"]
        return files + (novelty.save(folder) if novelty is not None else [])
    version = registry.save(card, write)
    report({"phase": "saved"})
    return version


def block_features(blocks, extractors, crops, digests, cache_root, report):
    """Return {block: [n, size] features}, reusing vectors cached per image and block.

    Face blocks share one alignment per photo: a photo missing from any face block's cache is
    aligned once and all face blocks are computed for it.
    """
    face_blocks = [name for name in blocks if name not in VGG_BLOCKS]
    sources = [(FaceFeatures(face_blocks), face_blocks)] if face_blocks else []
    sources += [(extractors[name], [name]) for name in blocks if name in VGG_BLOCKS]
    found = {}
    for part, (extractor, names) in enumerate(sources):
        step = {"phase": "features", "part": part, "parts": len(sources)}        # one pass per source
        caches = [cache_root / cache_id if cache_id else None for cache_id in extractor.cache_ids]
        vectors = [_read_cache(cache, digests) for cache in caches]
        missing = [i for i, digest in enumerate(digests) if any(digest not in v for v in vectors)]
        total, done = len(digests), len(digests) - len(missing)
        report(dict(step, done=done, total=total))
        for start in range(0, len(missing), 16):
            chunk = missing[start:start + 16]
            for cache, stored, computed in zip(caches, vectors, extractor.block_features(crops[chunk])):
                for i, vector in zip(chunk, computed):
                    stored[digests[i]] = vector
                    if cache is not None:
                        _save_atomically(cache / f"{digests[i]}.npy", vector)
            report(dict(step, done=done + start + len(chunk), total=total))
        for name, stored in zip(names, vectors):
            found[name] = np.stack([stored[digest] for digest in digests]).astype(np.float64)
    return found


def _read_cache(cache, digests):
    if cache is None:
        return {}
    cache.mkdir(parents=True, exist_ok=True)
    return {digest: np.load(cache / f"{digest}.npy") for digest in set(digests) if (cache / f"{digest}.npy").is_file()}


def _save_atomically(path, array):
    staging = path.with_suffix(".tmp.npy")
    np.save(staging, array)
    staging.replace(path)


def split_indices(labels, options):
    """Split image indices into stratified train, validation and test sets with a fixed seed."""
    n_classes = int(labels.max()) + 1
    counts = np.bincount(labels, minlength=n_classes)
    if counts.min() < 3:
        raise TrainingError("Every class needs at least 3 photos to have one in each of training, "
                            "validation and test.")
    indices = np.arange(len(labels))
    test_size = max(n_classes, int(round(options.test_fraction * len(labels))))
    rest, test = train_test_split(indices, test_size=test_size, stratify=labels, random_state=options.seed)
    val_size = max(n_classes, int(round(options.validation_fraction * len(labels))))
    if len(rest) - val_size < n_classes:
        raise TrainingError("The dataset is too small to split into training, validation and test.")
    train_idx, val = train_test_split(rest, test_size=val_size, stratify=labels[rest], random_state=options.seed)
    return {"train": np.sort(train_idx), "validation": np.sort(val), "test": np.sort(test)}


def _save_fine_tuned(dataset, options, registry, backbone, crops, features, labels, attributes, started, report):
    """Train the softmax head, fine-tune the last block, evaluate once on a held-out test split, save."""
    label_names = dataset.labels
    split = split_indices(labels, options)
    train_idx, val, test = split["train"], split["validation"], split["test"]
    x = features[backbone.name]
    head = SoftmaxHead(len(label_names), options)
    history = head.fit(x[train_idx], labels[train_idx], report, validation=(x[val], labels[val]))
    tune = fine_tune_face if isinstance(backbone, FaceFeatures) else fine_tune
    tuned, precision = tune(backbone, head, crops, labels, split, options, report)
    history += tuned
    report({"phase": "evaluating"})
    validation = head.probabilities(backbone.features(crops[val]))
    if np.bincount(labels[val]).min() >= 2:     # enough to check calibration on half it was not fitted on
        halves, _, _ = cross_validation_folds(labels[val], None, 2, options.seed)
        temperature, _, ece_crossed = choose_temperature(validation, labels[val], halves)
    else:
        temperature, ece_crossed = 1.0, None
    raw = head.probabilities(backbone.features(crops[test]))
    probabilities = apply_temperature(raw, temperature)
    fit_part = np.concatenate([train_idx, val])
    metrics = evaluate(labels[test], probabilities, label_names)
    held_out = [(fit_part, test)]
    baselines = baseline_scores(baseline_predictions(features, labels, held_out, len(label_names), options), labels,
                                held_out, len(label_names))
    metrics.update(clinical_metrics(labels[test], probabilities.argmax(axis=1), label_names,
                                    [attributes[i] for i in test], baselines["majority"]["accuracy"]))
    metrics.update(
        method="held-out", folds=None, grouped=False, accuracy_std=None, macro_f1_std=None,
        split={name: int(len(idx)) for name, idx in split.items()}, fine_tune_precision=precision,
        baselines=baselines,
        calibration=calibration_figures(raw, probabilities, labels[test], temperature, ece_crossed,
                                        "the validation split"),
        note=f"one held-out test split of {len(test)} photos (fine-tuning is too slow for k-fold)")
    thresholds = choose_thresholds(apply_temperature(validation, temperature), labels[val], options.min_coverage)
    pipeline = {"name": backbone.name, "blocks": [backbone.name], "block_sizes": [backbone.feature_size],
                "head": "softmax", "C": None}
    rows = np.full((len(labels), len(label_names)), np.nan)
    rows[test] = probabilities
    return _save(dataset, options, registry, backbone, head, None, pipeline, history, metrics, temperature,
                 thresholds, rows, labels, started, report, only=test)


def fine_tune(backbone, head, crops, labels, split, options, report):
    """Unfreeze the last convolutional block and train end to end at a low rate, with augmentation.

    Returns (epochs, precision). With mixed precision the network is trained as a copy computing
    in float16 with float32 weights and loss scaling; its weights are copied back, so the saved
    model and serving stay float32.
    """
    base = backbone.base
    unfreeze_last_block(base)
    pixels_in = keras.Input(backbone.extractor.input_shape[1:], name="pixels")
    model = keras.Model(pixels_in, head.model(backbone.extractor(pixels_in)), name="facedx")
    precision = fine_tune_precision(options.mixed_precision)
    optimizer = keras.optimizers.Adam(options.fine_tune_learning_rate)
    trained = model
    if precision == MIXED_FLOAT16:
        trained = convolutions_in(model, MIXED_FLOAT16)
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    trained.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    augment = keras.Sequential([keras.layers.RandomFlip("horizontal"), keras.layers.RandomRotation(0.04),
                                keras.layers.RandomZoom(0.08)], name="augment")

    def batches(indices, augmented):
        data = tf.data.Dataset.from_tensor_slices((backbone.pixels(crops[indices]), labels[indices]))
        if augmented:
            data = data.shuffle(len(indices), seed=options.seed)
        data = data.batch(options.batch_size)
        if augmented:
            data = data.map(lambda x, y: (augment(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
        return data.prefetch(tf.data.AUTOTUNE)

    history = fit_with_progress(trained, "fine-tune", options.fine_tune_epochs, options, report,
                                x=batches(split["train"], True), validation_data=batches(split["validation"], False),
                                shuffle=False, class_weight=class_weights(labels[split["train"]]))
    if trained is not model:
        model.set_weights(trained.get_weights())
    base.trainable = False
    return history, precision


def fine_tune_face(extractor, head, crops, labels, split, options, report):
    """Train the face network's tail (its 256-filter stages and descriptor layer) with the softmax head.

    The front of the network stays frozen, so each photo's 8 x 8 maps (of its chip and of the
    mirror image) are computed once; the model trained is what serving computes: the tail on both
    maps, averaged, then the head. Returns (epochs, precision: float32).
    """
    network = extractor.network
    front, tail = network.halves()
    chips = np.stack([face.chip for face in extractor.align(crops)]).astype(np.float32)
    maps = [np.concatenate([front.predict(part, batch_size=network.batch_size, verbose=0)
                            for part in np.array_split(images, max(1, len(images) // 64))])
            for images in (chips, chips[:, :, ::-1])]
    plain, mirrored = keras.Input(tail.input_shape[1:], name="map"), keras.Input(tail.input_shape[1:], name="mirror")
    model = keras.Model([plain, mirrored], head.model(keras.layers.Average()([tail(plain), tail(mirrored)])))
    tail.trainable = True
    model.compile(optimizer=keras.optimizers.Adam(options.fine_tune_learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    train, val = split["train"], split["validation"]
    history = fit_with_progress(model, "fine-tune", options.fine_tune_epochs, options, report,
                                x=[maps[0][train], maps[1][train]], y=labels[train],
                                validation_data=([maps[0][val], maps[1][val]], labels[val]),
                                batch_size=options.batch_size, class_weight=class_weights(labels[train]))
    tail.trainable = False
    return history, "float32"


def fine_tune_precision(setting):
    """Return the dtype policy fine-tuning runs in: mixed float16 when asked, or on a GPU when `auto`."""
    if setting == "on" or (setting == "auto" and tf.config.list_physical_devices("GPU")):
        return MIXED_FLOAT16
    return "float32"


def convolutions_in(model, policy):
    """Return a copy of `model` whose convolutions and pooling compute in `policy`, with the same weights.

    The preprocessing, the standardisation and the softmax head stay float32: standardising
    features whose spread is small loses too much in float16, and they cost next to nothing.
    """
    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.MaxPooling2D)):
            config["dtype"] = policy
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
    copy.set_weights(model.get_weights())
    return copy


def peak_memory_mib():
    """Return the peak resident memory of this process so far, in MiB (what a training run needed)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)     # KiB on Linux


def software_versions():
    """Return the versions of the libraries a model depends on, for its card."""
    return {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": np.__version__, "scikit-learn": sklearn.__version__, "opencv": cv2.__version__}
