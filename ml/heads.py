"""Classifiers on top of backbone features: a linear model, or a softmax layer trained with Keras."""
import joblib
import keras
import numpy as np
import tensorflow as tf
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.class_weight import compute_class_weight

from ml.errors import TrainingError




def build_head(name, n_classes, options):
    """Return an untrained head of kind `name`."""
    return (LinearHead if name == "linear" else SoftmaxHead)(n_classes, options)


def load_head(card, folder):
    """Load the head a saved model version was trained with."""
    return (LinearHead if card["head"] == "linear" else SoftmaxHead).load(card, folder)


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
    """Logistic regression on standardised features: the study's strongest recipe on small data."""
    name = "linear"

    def __init__(self, n_classes, options, model=None):
        self.n_classes = n_classes
        self.model = model or make_pipeline(
            StandardScaler(),
            LogisticRegression(C=options.regularization, class_weight="balanced", max_iter=5000,
                               random_state=options.seed))

    def fit(self, features, labels, report=None):
        """Fit on all the given features; return an (empty) epoch history."""
        self.model.fit(features, labels)
        return []

    def probabilities(self, features):
        """Return [n, n_classes] probabilities (classes absent from training get 0)."""
        found = self.model.predict_proba(features)
        full = np.zeros((len(features), self.n_classes))
        full[:, self.model.classes_] = found
        return full

    def log_probability(self, features, class_index):
        """Return log p(class) as a differentiable TensorFlow expression of the features (for Grad-CAM)."""
        scaler, regression = self.model[0], self.model[-1]
        scaled = (features - tf.constant(scaler.mean_, tf.float32)) / tf.constant(scaler.scale_, tf.float32)
        logits = tf.matmul(scaled, tf.constant(regression.coef_.T, tf.float32)) + \
            tf.constant(regression.intercept_, tf.float32)
        if regression.coef_.shape[0] == 1:                   # binary: sklearn keeps one logit
            logits = tf.concat([tf.zeros_like(logits), logits], axis=1)
        column = list(regression.classes_).index(class_index)
        return tf.nn.log_softmax(logits)[:, column]

    def save(self, folder):
        joblib.dump(self.model, folder / "head.joblib")
        return ["head.joblib"]

    @classmethod
    def load(cls, card, folder):
        # Only files this application wrote are loaded (joblib is pickle).
        return cls(len(card["labels"]), None, joblib.load(folder / "head.joblib"))


class SoftmaxHead:
    """Feature standardisation, dropout and a softmax layer, trained with early stopping."""
    name = "softmax"

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

    def save(self, folder):
        self.model.save(folder / "head.keras")
        return ["head.keras"]

    @classmethod
    def load(cls, card, folder):
        return cls(len(card["labels"]), None, keras.saving.load_model(folder / "head.keras", compile=False))


def fit_with_progress(model, phase, epochs, options, report, **fit_args):
    """Run model.fit with early stopping on validation loss and per-epoch progress; return the epochs."""
    progress = ProgressCallback(phase, epochs, report or (lambda event: None))
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
        event = {"phase": self.phase, "epoch": epoch + 1, "epochs": self.epochs}
        event.update({k: float(logs[k]) for k in ("loss", "accuracy", "val_loss", "val_accuracy") if k in logs})
        self.history.append(event)
        self.report(event)
