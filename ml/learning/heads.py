"""Classifiers on top of a pipeline's features: a linear model, or a softmax layer trained with Keras."""
from pathlib import Path
from typing import Protocol

import keras
import numpy as np
import tensorflow as tf
from sklearn.model_selection import train_test_split
from sklearn.utils.class_weight import compute_class_weight

from ml.errors import TrainingError
from ml.learning.pipelines import LinearModel
from ml.progress import METRICS, Progress

HEAD_ARRAYS = "head.npz"


class Head(Protocol):
    """What every head offers: class probabilities of features, a differentiable score, and its files.

    `linear`: its scores are linear in the features, so `direction(features, class_index)` gives
    the gradient that attribution maps spread over the face. A head that does not say so is not.
    """
    name: str
    linear: bool

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """Return [n, n_classes] probabilities."""

    def log_probability(self, features, class_index):
        """Return log p(class) as a differentiable TensorFlow expression of the features (for Grad-CAM)."""

    def save(self, folder: Path) -> list[str]:
        """Write the head's files; return their names."""


def load_head(card, folder):
    """Load the head a saved model version was trained with."""
    return (SoftmaxHead if card.head == "softmax" else LinearHead).load(card, folder)


def validation_split(labels, options):
    """Split indices into a training and a stratified validation part, or raise TrainingError if too few."""
    classes = len(np.unique(labels))
    size = max(classes, int(round(options.validation_fraction * len(labels))))
    if len(labels) - size < classes:
        raise TrainingError("Too few photos to keep a validation part (for early stopping or calibration); "
                            "use fewer folds or more photos.")
    return train_test_split(np.arange(len(labels)), test_size=size, stratify=labels, random_state=options.seed)


def class_weights(labels):
    """Return weights that balance the classes of the training labels."""
    classes = np.unique(labels)
    weights = compute_class_weight("balanced", classes=classes, y=labels)
    return {int(c): float(w) for c, w in zip(classes, weights)}


class LinearHead:
    """A linear model on block-scaled features (logistic regression, or the baseline's linear SVM)."""
    name = "linear"
    linear = True

    def __init__(self, model):
        self.model = model

    @classmethod
    def fit(cls, features, labels, block_sizes, candidate, n_classes, seed=0):
        """Fit `candidate`'s head on all the given features."""
        return cls(LinearModel.fit(features, labels, block_sizes, candidate, n_classes, seed))

    def probabilities(self, features):
        """Return [n, n_classes] probabilities (classes absent from training get 0)."""
        return self.model.probabilities(features)

    def direction(self, features, class_index):
        """Return (d log p(class) / d features, the training features' mean) at one photo's features."""
        return self.model.direction(features, class_index), np.broadcast_to(self.model.mean, np.shape(features))

    def log_probability(self, features, class_index):
        """Return log p(class) as a differentiable TensorFlow expression of the features (for Grad-CAM)."""
        model = self.model
        scaled = (features - tf.constant(model.mean, tf.float32)) / tf.constant(model.scale, tf.float32)
        logits = tf.matmul(scaled, tf.constant(model.coef.T, tf.float32)) + tf.constant(model.intercept, tf.float32)
        if model.coef.shape[0] == 1:                   # binary: sklearn keeps one logit
            logits = tf.concat([tf.zeros_like(logits), logits], axis=1)
        column = list(model.classes).index(class_index)
        return tf.nn.log_softmax(logits)[:, column]

    def save(self, folder):
        np.savez(folder / HEAD_ARRAYS, **self.model.arrays())
        return [HEAD_ARRAYS]

    @classmethod
    def load(cls, card, folder):
        if (folder / HEAD_ARRAYS).is_file():
            with np.load(folder / HEAD_ARRAYS, allow_pickle=False) as arrays:
                return cls(LinearModel.from_arrays(arrays))
        return cls(_legacy_model(card, folder))


def _legacy_model(card, folder):
    """Read a linear head saved by versions before arrays (a scikit-learn pipeline this application pickled)."""
    import joblib

    pipeline = joblib.load(folder / "head.joblib")
    scaler, regression = pipeline[0], pipeline[-1]
    return LinearModel(scaler.mean_, scaler.scale_, regression.coef_, regression.intercept_, regression.classes_,
                       len(card.labels), "linear")


class SoftmaxHead:
    """Feature standardisation, dropout and a softmax layer, trained with early stopping.

    Its scores are linear in the features too: standardisation, dropout (off when serving), one dense layer.
    """
    name = "softmax"
    linear = True

    def __init__(self, n_classes, options, model=None):
        self.n_classes, self.options, self.model = n_classes, options, model

    def build(self, train_features):
        """Create the Keras head; its standardisation is fitted on the training features only."""
        features = keras.Input((train_features.shape[1],), name="features")
        scale = keras.layers.Normalization(name="standardise")
        scale.adapt(train_features)
        x = keras.layers.Dropout(self.options.dropout, name="head_dropout")(scale(features))
        outputs = keras.layers.Dense(self.n_classes, activation="softmax", name="predictions")(x)
        self.model = keras.Model(features, outputs, name="head")
        self.model.compile(optimizer=keras.optimizers.Adam(self.options.learning_rate),
                           loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return self.model

    def fit(self, features, labels, report=None, validation=None, phase="head"):
        """Train with early stopping on a validation part of the given data; return the epoch history."""
        if validation is None:
            train_idx, val_idx = validation_split(labels, self.options)
            validation = (features[val_idx], labels[val_idx])
            features, labels = features[train_idx], labels[train_idx]
        self.build(features)
        return fit_with_progress(self.model, phase, self.options.epochs, self.options, report,
                                 x=features, y=labels, validation_data=validation,
                                 batch_size=self.options.batch_size, class_weight=class_weights(labels))

    def probabilities(self, features):
        # A direct call: the head is one small layer, and a tf.function per head would retrace per fold.
        return np.asarray(self.model(tf.constant(features, tf.float32), training=False), dtype=np.float64)

    def log_probability(self, features, class_index):
        """Return log p(class) as a differentiable TensorFlow expression of the features (for Grad-CAM)."""
        return tf.math.log(self.model(features, training=False)[:, class_index] + 1e-12)

    def direction(self, features, class_index):
        """Return (d log p(class) / d features, the training features' mean) at one photo's features.

        Standardisation, dropout (off when serving) and one dense layer: the scores are linear in
        the features, as a linear head's are.
        """
        standardise, dense = self.model.get_layer("standardise"), self.model.get_layer("predictions")
        mean = np.asarray(standardise.mean, np.float64).ravel()
        scale = np.maximum(np.sqrt(np.asarray(standardise.variance, np.float64).ravel()), keras.backend.epsilon())
        kernel = np.asarray(dense.kernel, np.float64)                     # [features, classes]
        p = self.probabilities(np.asarray(features, np.float32)[np.newaxis])[0]
        return (kernel[:, class_index] - kernel @ p) / scale, mean

    def save(self, folder):
        self.model.save(folder / "head.keras")
        return ["head.keras"]

    @classmethod
    def load(cls, card, folder):
        model = keras.saving.load_model(folder / "head.keras", compile=False, safe_mode=True)
        return cls(len(card.labels), None, model)


def fit_with_progress(model, phase, epochs, options, report, **fit_args):
    """Run model.fit with early stopping on validation loss and per-epoch progress; return the epochs."""
    progress = ProgressCallback(phase, epochs, report or (lambda step: None))
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=options.patience, restore_best_weights=True)
    model.fit(epochs=epochs, verbose=0, callbacks=[progress, stop], **fit_args)
    return progress.history


class ProgressCallback(keras.callbacks.Callback):
    """Report every finished epoch of one phase and keep it for the model card."""

    def __init__(self, phase, epochs, report):
        super().__init__()
        self.phase, self.epochs, self.report = phase, epochs, report
        self.history = []

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        step = Progress(self.phase, epoch=epoch + 1, epochs=self.epochs,
                        metrics={name: float(logs[name]) for name in METRICS if name in logs})
        self.history.append({"phase": step.phase, "epoch": step.epoch, "epochs": step.epochs} | step.metrics)
        self.report(step)
