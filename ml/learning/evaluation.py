"""Metrics of a classifier on held-out data."""
import math

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support, roc_auc_score

SUBGROUP_GAP = 0.10        # a subgroup this much less accurate than the rest is flagged
AGE_BANDS = ((0, "0-2"), (3, "3-12"), (13, "13-17"), (18, "18+"))   # (first whole year, name)


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


def wilson_interval(successes, n, z=1.96):
    """Return the Wilson score interval (low, high) of successes out of n; (0.0, 1.0) when n is 0."""
    if n == 0:
        return 0.0, 1.0
    share, spread = successes / n, z * z / n
    centre = (share + spread / 2) / (1 + spread)
    half = z / (1 + spread) * math.sqrt(share * (1 - share) / n + spread / (4 * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def _proportion(k, n):
    """Return a share with its 95% Wilson interval: {"value", "low", "high", "k", "n"}; value None when n is 0."""
    k, n = int(k), int(n)
    low, high = wilson_interval(k, n)
    return {"value": k / n if n else None, "low": low, "high": high, "k": k, "n": n}


def clinical_figures(y_true, y_pred, labels):
    """Return each condition's sensitivity and specificity, with 95% intervals, from pooled predictions."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    figures = {}
    for index, label in enumerate(labels):
        has, said = y_true == index, y_pred == index
        figures[label] = {"sensitivity": _proportion(np.sum(has & said), np.sum(has)),
                          "specificity": _proportion(np.sum(~has & ~said), np.sum(~has))}
    return figures


def age_band(age):
    """Return the name of the age band of an age in years: 0-2, 3-12, 13-17 or 18+ (by whole years)."""
    years = math.floor(age)
    return next(name for first, name in reversed(AGE_BANDS) if years >= first)


def _subgroup_of(attribute, attributes):
    """Return the group a photo's attribute puts it in, or None when the photo does not give it."""
    value = attributes.get(attribute)
    if value is None:
        return None
    if attribute == "age":
        return age_band(value) if math.isfinite(value) and value >= 0 else None
    return str(value).strip().casefold() or None


def subgroup_figures(correct, attributes):
    """Return the accuracy of each sex, age band and ancestry, flagged when well below the other photos'."""
    correct = np.asarray(correct, dtype=bool)
    rows = []
    for attribute in ("sex", "age", "ancestry"):
        groups = np.array([_subgroup_of(attribute, a) for a in attributes], dtype=object)
        known = np.array([group is not None for group in groups], dtype=bool)
        names = [name for _, name in AGE_BANDS] if attribute == "age" else sorted(set(groups[known]))
        for name in names:
            members, rest = groups == name, known & (groups != name)
            if not members.any():
                continue
            share = _proportion(np.sum(correct[members]), np.sum(members))
            rest_accuracy = float(np.mean(correct[rest])) if rest.any() else None
            # The tolerance keeps a gap of exactly ten points (0.8 - 0.7 in floating point) unflagged.
            below = rest_accuracy is not None and rest_accuracy - share["value"] > SUBGROUP_GAP + 1e-9
            rows.append({"attribute": attribute, "group": name, "n": share["n"], "accuracy": share["value"],
                         "low": share["low"], "high": share["high"], "rest_accuracy": rest_accuracy,
                         "below_rest": below})
    return rows
