"""Fine-tuning: a held-out split, the softmax head, then the backbone's last block (or the face network's tail).

A fine-tuned run is evaluated once on its held-out test split (fine-tuning is too slow for
k-fold); mixed float16 is used when asked, or on a GPU when `auto`.
"""
import keras
import numpy as np
import tensorflow as tf
from sklearn.model_selection import train_test_split

from ml.errors import TrainingError
from ml.features.extractor import FaceFeatures
from ml.features.vgg import unfreeze_last_block
from ml.learning.calibration import apply_temperature, choose_temperature, choose_thresholds
from ml.learning.card_figures import baseline_predictions, baseline_scores, calibration_figures, clinical_metrics
from ml.learning.evaluation import cross_validation_folds, evaluate
from ml.learning.heads import SoftmaxHead, class_weights, fit_with_progress
from ml.progress import Progress

MIXED_FLOAT16 = "mixed_float16"


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


def save_fine_tuned(dataset, options, registry, backbone, crops, features, labels, attributes, started, report,
                    save):
    """Train the softmax head, fine-tune the last block, evaluate once on a held-out test split, save.

    `save` writes the version as every training run does (ml.learning.training passes its own).
    """
    label_names = dataset.labels
    split = split_indices(labels, options)
    train_idx, val, test = split["train"], split["validation"], split["test"]
    x = features[backbone.name]
    head = SoftmaxHead(len(label_names), options)
    history = head.fit(x[train_idx], labels[train_idx], report, validation=(x[val], labels[val]))
    tune = fine_tune_face if isinstance(backbone, FaceFeatures) else fine_tune
    tuned, precision = tune(backbone, head, crops, labels, split, options, report)
    history += tuned
    report(Progress("evaluating"))
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
    return save(dataset, options, registry, backbone, head, None, pipeline, history, metrics, temperature,
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

