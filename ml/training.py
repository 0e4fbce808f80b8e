"""Transfer learning in two phases: a new head on cached VGG16 features, then optional fine-tuning."""
import platform
from dataclasses import asdict, dataclass, fields

import cv2
import keras
import numpy as np
import sklearn
import tensorflow as tf
from sklearn.model_selection import train_test_split
from sklearn.utils.class_weight import compute_class_weight

from ml.backbones import (build_feature_extractor, build_vgg16, check_image_size, resolve_weights,
                          unfreeze_last_block)
from ml.errors import TrainingError
from ml.evaluation import evaluate

FEATURES_DIR = "features"
_KIND_NAMES = {int: "a whole number", float: "a number", str: "text"}


@dataclass(frozen=True)
class TrainingOptions:
    """Everything a training run can be told; the names are the same in the CLI, API and forms."""
    weights: str = "imagenet"
    image_size: int = 224
    epochs: int = 30
    fine_tune_epochs: int = 0
    batch_size: int = 16
    learning_rate: float = 1e-3
    fine_tune_learning_rate: float = 1e-5
    dropout: float = 0.3
    patience: int = 5
    test_fraction: float = 0.2
    validation_fraction: float = 0.15
    seed: int = 1337

    def __post_init__(self):
        check_image_size(self.image_size)
        if not 1 <= self.epochs <= 1000 or not 0 <= self.fine_tune_epochs <= 1000:
            raise TrainingError("epochs must be 1-1000 and fine_tune_epochs 0-1000.")
        if not 1 <= self.batch_size <= 512 or self.patience < 1:
            raise TrainingError("batch_size must be 1-512 and patience at least 1.")
        if not (0 < self.test_fraction < 0.5 and 0 < self.validation_fraction < 0.5):
            raise TrainingError("test_fraction and validation_fraction must each be between 0 and 0.5.")

    @classmethod
    def from_dict(cls, options):
        """Build options from user input, refusing unknown names and malformed values."""
        known = {f.name: f.type for f in fields(cls)}
        unknown = set(options) - set(known)
        if unknown:
            raise TrainingError(f"Unknown training option(s): {', '.join(sorted(unknown))}.")
        values = {}
        for name, value in options.items():
            kind = known[name]
            try:
                values[name] = kind(value)
            except (TypeError, ValueError):
                raise TrainingError(f"Training option {name} must be {_KIND_NAMES[kind]}.") from None
        return cls(**values)


class TrainingCancelled(Exception):
    """Raised by a progress callback to stop a run; nothing is written."""


def train(dataset, options, registry, pretrained_dirs=(), progress=None):
    """Train a model on `dataset`, evaluate it on the held-out test split and save it as a new version."""
    report = progress or (lambda event: None)
    source = resolve_weights(options.weights, pretrained_dirs)   # before anything slow: fail fast
    keras.utils.set_random_seed(options.seed)
    report({"phase": "loading"})
    pixels, labels, digests = dataset.load(options.image_size)
    split = split_indices(labels, options)
    base = build_vgg16(options.image_size, source)
    extractor = build_feature_extractor(base)
    cache = dataset.path / FEATURES_DIR / f"vgg16-{source.cache_id}-{options.image_size}" \
        if source.cache_id else None
    features = extract_features(extractor, pixels, digests, cache, report)
    head = build_head(features[split["train"]], len(dataset.labels), options.dropout)
    history = fit_head(head, features, labels, split, options, report)
    model = assemble(extractor, head)
    if options.fine_tune_epochs:
        history += fine_tune(model, base, pixels, labels, split, options, report)
    report({"phase": "evaluating"})
    probabilities = predict_in_batches(model, pixels[split["test"]])
    metrics = evaluate(labels[split["test"]], probabilities, dataset.labels)
    report({"phase": "saving"})
    card = {
        "labels": dataset.labels,
        "backbone": "vgg16",
        "weights": dict(source.as_dict(), note="random initialisation, for tests only: no real predictions"
                        ) if source.name == "none" else source.as_dict(),
        "image_size": options.image_size,
        "face": dataset.manifest["face"],
        "dataset": {"id": dataset.id, "checksum": dataset.manifest["checksum"], "images": len(labels)},
        "split": {name: int(len(idx)) for name, idx in split.items()} | {"seed": options.seed},
        "options": asdict(options),
        "history": history,
        "metrics": {"test": metrics},
        "software": software_versions(),
    }
    return registry.save(model, card)


def split_indices(labels, options):
    """Split image indices into stratified train, validation and test sets with a fixed seed."""
    n_classes = int(labels.max()) + 1
    counts = np.bincount(labels, minlength=n_classes)
    if counts.min() < 3:
        raise TrainingError("Every class needs at least 3 photos to have one in each of training, "
                            "validation and test.")
    indices = np.arange(len(labels))
    test_size = max(n_classes, int(round(options.test_fraction * len(labels))))
    rest, test = train_test_split(indices, test_size=test_size, stratify=labels,
                                  random_state=options.seed)
    val_size = max(n_classes, int(round(options.validation_fraction * len(labels))))
    if len(rest) - val_size < n_classes:
        raise TrainingError("The dataset is too small to split into training, validation and test.")
    train_idx, val = train_test_split(rest, test_size=val_size, stratify=labels[rest],
                                      random_state=options.seed)
    return {"train": np.sort(train_idx), "validation": np.sort(val), "test": np.sort(test)}


def extract_features(extractor, pixels, digests, cache, report, batch_size=32):
    """Return one backbone feature vector per image, reusing cached vectors where the cache has them."""
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
        vectors = np.asarray(extractor(pixels[chunk].astype("float32"), training=False))
        for i, vector in zip(chunk, vectors):
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


def build_head(train_features, n_classes, dropout):
    """Return the new classification head: feature standardisation, dropout and a softmax layer.

    The standardisation is fitted on the training features only; pooled VGG16 features span
    very different scales, and a linear layer learns far faster on standardised inputs.
    """
    features = keras.Input((train_features.shape[1],), name="features")
    scale = keras.layers.Normalization(name="standardise")
    scale.adapt(train_features)
    x = keras.layers.Dropout(dropout, name="head_dropout")(scale(features))
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="predictions")(x)
    return keras.Model(features, outputs, name="head")


def fit_head(head, features, labels, split, options, report):
    """Train the head on cached features with early stopping on validation loss; return the history."""
    head.compile(optimizer=keras.optimizers.Adam(options.learning_rate),
                 loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    train_idx, val = split["train"], split["validation"]
    return _fit(head, "head", options.epochs, options, report,
                x=features[train_idx], y=labels[train_idx], validation_data=(features[val], labels[val]),
                batch_size=options.batch_size, class_weight=class_weights(labels[train_idx]))


def fine_tune(model, base, pixels, labels, split, options, report):
    """Unfreeze the last convolutional block and train end to end at a low rate, with augmentation."""
    unfreeze_last_block(base)
    model.compile(optimizer=keras.optimizers.Adam(options.fine_tune_learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    augment = keras.Sequential([keras.layers.RandomFlip("horizontal"), keras.layers.RandomRotation(0.04),
                                keras.layers.RandomZoom(0.08)], name="augment")

    def batches(indices, augmented):
        data = tf.data.Dataset.from_tensor_slices((pixels[indices].astype("float32"), labels[indices]))
        if augmented:
            data = data.shuffle(len(indices), seed=options.seed)
        data = data.batch(options.batch_size)
        if augmented:
            data = data.map(lambda x, y: (augment(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
        return data.prefetch(tf.data.AUTOTUNE)

    history = _fit(model, "fine-tune", options.fine_tune_epochs, options, report,
                   x=batches(split["train"], True), validation_data=batches(split["validation"], False),
                   shuffle=False, class_weight=class_weights(labels[split["train"]]))
    base.trainable = False
    return history


def _fit(model, phase, epochs, options, report, **fit_args):
    """Run model.fit with early stopping and per-epoch progress; return the epochs as dicts."""
    progress = _ProgressCallback(phase, epochs, report)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=options.patience,
                                         restore_best_weights=True)
    model.fit(epochs=epochs, verbose=0, callbacks=[progress, stop], **fit_args)
    return progress.history


def class_weights(labels):
    """Return weights that balance the classes of the training labels."""
    classes = np.unique(labels)
    weights = compute_class_weight("balanced", classes=classes, y=labels)
    return {int(c): float(w) for c, w in zip(classes, weights)}


def assemble(extractor, head):
    """Return one model from RGB pixels to class probabilities: backbone, pooling and the trained head."""
    pixels = keras.Input(extractor.input_shape[1:], name="pixels")
    return keras.Model(pixels, head(extractor(pixels)), name="facedx")


def predict_in_batches(model, pixels, batch_size=32):
    """Return the model's probabilities for many images, calling it directly batch by batch."""
    outputs = [np.asarray(model(pixels[i:i + batch_size].astype("float32"), training=False))
               for i in range(0, len(pixels), batch_size)]
    return np.concatenate(outputs) if outputs else np.zeros((0, model.output_shape[-1]))


def software_versions():
    """Return the versions of the libraries a model depends on, for its card."""
    return {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": np.__version__, "scikit-learn": sklearn.__version__, "opencv": cv2.__version__}


class _ProgressCallback(keras.callbacks.Callback):
    """Report every finished epoch of one phase and keep it for the model card."""

    def __init__(self, phase, epochs, report):
        super().__init__()
        self.phase, self.epochs, self.report = phase, epochs, report
        self.history = []

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        event = {"phase": self.phase, "epoch": epoch + 1, "epochs": self.epochs}
        event.update({k: float(logs[k]) for k in ("loss", "accuracy", "val_loss", "val_accuracy") if k in logs})
        self.history.append(event)
        self.report(event)
