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
