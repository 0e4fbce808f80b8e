"""The figures a model card reports beside accuracy, for cross-validated and fine-tuned runs alike.

The baselines' scores (the majority class and the classical baseline on the same folds), the
sensitivity and specificity per condition, the subgroups' figures, the usefulness flag and the
calibration figures.
"""
import numpy as np

from ml.learning.calibration import reliability
from ml.learning.evaluation import (
    clinical_figures,
    score_predictions,
    subgroup_figures,
    summarize_baseline,
    wilson_interval,
)
from ml.learning.pipelines import BASELINE, Grams, cv_predictions


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
