"""Metrics of a classifier on held-out data."""
import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support, roc_auc_score


def evaluate(y_true, probabilities, labels):
    """Return accuracy, per-class precision/recall/F1/support, confusion matrix and macro ROC-AUC."""
    y_true = np.asarray(y_true)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    classes = list(range(len(labels)))
    y_pred = probabilities.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=classes, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(np.mean(f1)),
        "macro_roc_auc": macro_roc_auc(y_true, probabilities),
        "per_class": {label: {"precision": float(precision[i]), "recall": float(recall[i]),
                              "f1": float(f1[i]), "support": int(support[i])}
                      for i, label in enumerate(labels)},
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=classes).tolist(),
        "n": int(len(y_true)),
    }


def macro_roc_auc(y_true, probabilities):
    """Return the one-vs-rest macro ROC-AUC, or None when a class is missing from y_true."""
    if len(np.unique(y_true)) != probabilities.shape[1]:
        return None
    if probabilities.shape[1] == 2:
        return float(roc_auc_score(y_true, probabilities[:, 1]))
    return float(roc_auc_score(y_true, probabilities, multi_class="ovr", average="macro"))


def cross_validation_folds(labels, groups, n_folds, seed):
    """Return (folds as (train, test) index pairs, whether they are grouped by person, folds used).

    With `groups` (one person id per image) nobody is in a fold's training and test part at once.
    The number of folds shrinks to what the smallest class (or the number of people) allows.
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    smallest = int(np.bincount(labels).min())
    grouped = groups is not None
    limit = smallest if not grouped else min(smallest, len(set(groups)))
    n_folds = max(2, min(n_folds, limit))
    if grouped:
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        folds = list(splitter.split(np.zeros(len(labels)), labels, groups))
    else:
        splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        folds = list(splitter.split(np.zeros(len(labels)), labels))
    return folds, grouped, n_folds


def summarize(fold_metrics, y_true, probabilities, labels):
    """Combine per-fold metrics and pooled out-of-fold probabilities into the card's figures."""
    pooled = evaluate(y_true, probabilities, labels)
    accuracies = [m["accuracy"] for m in fold_metrics]
    f1s = [m["macro_f1"] for m in fold_metrics]
    return dict(pooled, accuracy=float(np.mean(accuracies)), accuracy_std=float(np.std(accuracies)),
                macro_f1=float(np.mean(f1s)), macro_f1_std=float(np.std(f1s)), fold_accuracies=accuracies)


def score_predictions(y_true, y_pred, n_classes):
    """Return accuracy and macro F1 of hard predictions (for baselines without probabilities)."""
    from sklearn.metrics import f1_score

    return {"accuracy": float(accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, labels=list(range(n_classes)), average="macro",
                                       zero_division=0))}


def summarize_baseline(fold_scores):
    """Return mean and standard deviation of a baseline's per-fold accuracy and macro F1."""
    out = {}
    for key in ("accuracy", "macro_f1"):
        values = [s[key] for s in fold_scores]
        out[key], out[f"{key}_std"] = float(np.mean(values)), float(np.std(values))
    return out
