"""Training: features of every face from a backbone (cached), a head on top, and an honest evaluation.

Without fine-tuning the evaluation is stratified k-fold cross-validation (grouped by person when
the dataset names them) with two baselines on the same folds, then the final head is trained on
all images. Fine-tuning runs keep one held-out test split, which is faster, and say so.
"""
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
from sklearn.model_selection import train_test_split

from ml.backbones import DlibFaceBackbone, build_backbone, default_backbone
from ml.backbones.vgg import unfreeze_last_block
from ml.baselines import baselines, hog_features
from ml.calibration import apply_temperature, choose_thresholds, fit_temperature, reliability
from ml.errors import TrainingError
from ml.evaluation import (cross_validation_folds, evaluate, score_predictions, summarize, summarize_baseline)

from ml.heads import SoftmaxHead, build_head, class_weights, fit_with_progress, validation_split

FEATURES_DIR = "features"
MIXED_FLOAT16 = "mixed_float16"


class TrainingCancelled(Exception):
    """Raised by a progress callback to stop a run; nothing is written."""


def train(dataset, options, registry, pretrained_dirs=(), progress=None):
    """Train a model on `dataset`, evaluate it honestly and save it as a new (inactive) version."""
    report = progress or (lambda event: None)
    started = time.monotonic()
    if options.backbone == "auto":
        options = replace(options, backbone=default_backbone(pretrained_dirs))
    keras.utils.set_random_seed(options.seed)       # first: random backbone weights (tests) depend on it too
    backbone = build_backbone(options.backbone, options.weights, options.image_size, pretrained_dirs)  # fail fast
    if options.fine_tune_epochs and not backbone.fine_tunable:
        raise TrainingError(f"The {backbone.name} backbone cannot be fine-tuned; set fine_tune_epochs to 0.")
    report({"phase": "loading"})
    crops, labels, digests, groups = dataset.load_crops()
    n_classes = len(dataset.labels)
    if np.bincount(labels, minlength=n_classes).min() < 3:
        raise TrainingError("Every class needs at least 3 photos for an evaluation.")
    cache = dataset.path / FEATURES_DIR / backbone.cache_id if backbone.cache_id else None
    features = extract_features(backbone, crops, digests, cache, report)
    report({"phase": "baselines"})
    aligner = backbone if isinstance(backbone, DlibFaceBackbone) else DlibFaceBackbone()
    classical = hog_features(crops, aligner)
    if options.fine_tune_epochs:
        head, history, metrics, tested, thresholds = held_out_with_fine_tuning(
            backbone, crops, features, classical, labels, dataset.labels, options, report)
    else:
        metrics, tested, thresholds = cross_validate(features, classical, labels, groups, dataset.labels, options,
                                                     report)
        report({"phase": "final head"})
        head = build_head(options.head, n_classes, options)
        history = head.fit(features, labels, report)
    report({"phase": "saving"})
    card = {
        "labels": dataset.labels,
        "backbone": backbone.describe(),
        "head": options.head,
        "image_size": backbone.input_size,
        "face": dataset.manifest["face"],
        "dataset": {"id": dataset.id, "checksum": dataset.manifest["checksum"], "images": len(labels)},
        "options": asdict(options),
        "history": history,
        "metrics": metrics,
        "calibration": {"temperature": metrics["calibration"]["temperature"]},
        "abstention": thresholds,
        "training_seconds": round(time.monotonic() - started, 1),
        "training_peak_memory_mib": peak_memory_mib(),
        "software": software_versions(),
    }
    evaluation = [{"image": int(i), "file": dataset.manifest["images"][i]["file"], "label": int(labels[i]),
                   "probabilities": [round(float(p), 6) for p in probabilities]} for i, probabilities in tested]

    def write(folder):
        (folder / "evaluation.json").write_text(json.dumps(evaluation))
        return backbone.save(folder) + head.save(folder) + ["evaluation.json"]
    return registry.save(card, write)


def extract_features(backbone, crops, digests, cache, report, batch_size=32):
    """Return one feature vector per crop, reusing cached vectors where the cache has them."""
    cached = {}
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        for digest in set(digests):
            path = cache / f"{digest}.npy"
            if path.is_file():
                cached[digest] = np.load(path)
    missing = [i for i, digest in enumerate(digests) if digest not in cached]
    report({"phase": "features", "done": len(digests) - len(missing), "total": len(digests)})
    for start in range(0, len(missing), batch_size):
        chunk = missing[start:start + batch_size]
        for i, vector in zip(chunk, backbone.features(crops[chunk])):
            cached[digests[i]] = vector
            if cache is not None:
                _save_atomically(cache / f"{digests[i]}.npy", vector)
        report({"phase": "features", "done": len(digests) - len(missing) + start + len(chunk),
                "total": len(digests)})
    return np.stack([cached[digest] for digest in digests])


def _save_atomically(path, array):
    staging = path.with_suffix(".tmp.npy")
    np.save(staging, array)
    staging.replace(path)


def cross_validate(features, classical, labels, groups, label_names, options, report):
    """Stratified (and, when people are named, grouped) k-fold CV of the head and of the baselines.

    Each fold's head is calibrated on a validation part of that fold's training images only, so
    the calibration figures are measured on images that played no part in it.
    """
    folds, grouped, n_folds = cross_validation_folds(labels, groups, options.folds, options.seed)
    raw = np.zeros((len(labels), len(label_names)))
    calibrated = np.zeros_like(raw)
    fold_metrics = []
    for number, (train_idx, test_idx) in enumerate(folds, 1):
        def fold_report(event, number=number):      # epochs inside a fold: progress only, no curves
            report({"phase": "cross-validation", "fold": number, "folds": n_folds,
                    "fold_epoch": event["epoch"], "fold_epochs": event["epochs"]})
        report({"phase": "cross-validation", "fold": number, "folds": n_folds})
        head = build_head(options.head, len(label_names), options)
        head.fit(features[train_idx], labels[train_idx], fold_report)
        raw[test_idx] = head.probabilities(features[test_idx])
        temperature = fold_temperature(features[train_idx], labels[train_idx], label_names, options, fold_report)
        calibrated[test_idx] = apply_temperature(raw[test_idx], temperature)
        fold_metrics.append(evaluate(labels[test_idx], calibrated[test_idx], label_names))
    metrics = summarize(fold_metrics, labels, calibrated, label_names)
    metrics.update(method="cross-validation", folds=n_folds, grouped=grouped,
                   baselines=baseline_scores(folds, classical, labels, len(label_names), options.seed),
                   calibration=calibration_report(raw, calibrated, labels, fit_temperature(raw, labels),
                                                  "each fold on a validation part of its training images; "
                                                  "the final model on all out-of-fold predictions"),
                   note=f"{n_folds}-fold stratified cross-validation"
                        + (", grouped by person" if grouped else ", not grouped by person (no subjects given)")
                        + "; the final model is trained on all images")
    return metrics, list(enumerate(calibrated)), choose_thresholds(calibrated, labels)


def fold_temperature(features, labels, label_names, options, report):
    """Fit a temperature for one fold on a validation part of its training images (1.0 if it is too small)."""
    try:
        train_idx, val_idx = validation_split(labels, options)
        head = build_head(options.head, len(label_names), options)
        head.fit(features[train_idx], labels[train_idx], report)
    except TrainingError:
        return 1.0
    return fit_temperature(head.probabilities(features[val_idx]), labels[val_idx])


def calibration_report(raw, calibrated, labels, temperature, fitted_on):
    """Return the card's calibration figures: ECE and reliability bins before and after."""
    ece_before, bins_before = reliability(raw, labels)
    ece_after, bins_after = reliability(calibrated, labels)
    return {"temperature": temperature, "ece_before": ece_before, "ece_after": ece_after,
            "reliability_before": bins_before, "reliability_after": bins_after, "fitted_on": fitted_on}


def baseline_scores(folds, classical, labels, n_classes, seed):
    """Score the majority class and HOG + linear SVM on exactly the model's folds."""
    scores = {}
    for name, (make, kind) in baselines(seed).items():
        x = classical if kind == "hog" else np.zeros((len(labels), 1))
        per_fold = [score_predictions(labels[test], make().fit(x[train], labels[train]).predict(x[test]), n_classes)
                    for train, test in folds]
        scores[name] = summarize_baseline(per_fold)
    return scores


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


def held_out_with_fine_tuning(backbone, crops, features, classical, labels, label_names, options, report):
    """Train the softmax head, fine-tune the last block, evaluate once on a held-out test split."""
    split = split_indices(labels, options)
    train_idx, val, test = split["train"], split["validation"], split["test"]
    head = SoftmaxHead(len(label_names), options)
    history = head.fit(features[train_idx], labels[train_idx], report, validation=(features[val], labels[val]))
    tuned, precision = fine_tune(backbone, head, crops, labels, split, options, report)
    history += tuned
    report({"phase": "evaluating"})
    validation = head.probabilities(backbone.features(crops[val]))
    temperature = fit_temperature(validation, labels[val])
    raw = head.probabilities(backbone.features(crops[test]))
    probabilities = apply_temperature(raw, temperature)
    metrics = evaluate(labels[test], probabilities, label_names)
    fit_part = np.concatenate([train_idx, val])
    metrics.update(method="held-out", folds=None, grouped=False, accuracy_std=None, macro_f1_std=None,
                   split={name: int(len(idx)) for name, idx in split.items()},
                   baselines=baseline_scores([(fit_part, test)], classical, labels, len(label_names), options.seed),
                   calibration=calibration_report(raw, probabilities, labels[test], temperature,
                                                  "the validation split"),
                   fine_tune_precision=precision,
                   note=f"one held-out test split of {len(test)} photos (fine-tuning is too slow for k-fold)")
    thresholds = choose_thresholds(apply_temperature(validation, temperature), labels[val])
    return head, history, metrics, list(zip(test, probabilities)), thresholds


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
