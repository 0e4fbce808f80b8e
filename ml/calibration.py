"""Calibrated confidence: temperature scaling, expected calibration error, and when to abstain."""
import numpy as np
from scipy.optimize import minimize_scalar

BINS = 10
TARGET_ACCURACY = 0.9      # abstain below the confidence at which predictions stop being this accurate
DEFAULT_MIN_MARGIN = 0.1   # and when the first two conditions are this close


def apply_temperature(probabilities, temperature):
    """Rescale probabilities as softmax(log p / T): T > 1 softens over-confident ones."""
    logits = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    scaled = np.exp(logits)
    return scaled / scaled.sum(axis=1, keepdims=True)


# A small, perfectly separated validation set would drive the temperature towards 0 and make
# every answer 100% sure; sharpening is therefore limited to a factor of 2.
TEMPERATURE_RANGE = (0.5, 10.0)


def fit_temperature(probabilities, labels):
    """Return the temperature (within TEMPERATURE_RANGE) that minimises the held-out negative log-likelihood."""
    labels = np.asarray(labels)

    def nll(log_t):
        scaled = apply_temperature(probabilities, np.exp(log_t))
        return -np.mean(np.log(np.clip(scaled[np.arange(len(labels)), labels], 1e-12, 1.0)))
    low, high = np.log(TEMPERATURE_RANGE)
    return float(np.exp(minimize_scalar(nll, bounds=(low, high), method="bounded").x))


def reliability(probabilities, labels, bins=BINS):
    """Return (expected calibration error, per-bin [low, high, count, confidence, accuracy])."""
    probabilities, labels = np.asarray(probabilities), np.asarray(labels)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0, 1, bins + 1)
    rows, ece = [], 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence > low) & (confidence <= high) if low > 0 else (confidence <= high)
        count = int(inside.sum())
        if count:
            mean_confidence, accuracy = float(confidence[inside].mean()), float(correct[inside].mean())
            ece += count / len(labels) * abs(mean_confidence - accuracy)
            rows.append([float(low), float(high), count, mean_confidence, accuracy])
    return float(ece), rows


def choose_thresholds(probabilities, labels, target=TARGET_ACCURACY):
    """Return the abstention thresholds for a model, from its held-out predictions.

    min_probability: the lowest top probability above which held-out predictions are at least
    `target` accurate (0 when they all are). min_margin: the same for the gap to the runner-up,
    and never below DEFAULT_MIN_MARGIN.
    """
    probabilities, labels = np.asarray(probabilities), np.asarray(labels)
    ordered = np.sort(probabilities, axis=1)
    correct = probabilities.argmax(axis=1) == labels
    return {"min_probability": _lowest_accurate(ordered[:, -1], correct, target),
            "min_margin": max(DEFAULT_MIN_MARGIN, _lowest_accurate(ordered[:, -1] - ordered[:, -2], correct, target))}


def _lowest_accurate(scores, correct, target):
    """Return the smallest cut-off whose predictions at or above it reach `target` accuracy (0 if all do)."""
    if correct.mean() >= target:
        return 0.0
    for cut in np.unique(scores):
        kept = scores >= cut
        if correct[kept].mean() >= target:
            return round(float(cut), 4)
    return 1.0


def decide(probabilities, thresholds, face_reasons=()):
    """Return the reasons to abstain (an empty list means a label may be given)."""
    ordered = sorted(probabilities, reverse=True)
    reasons = list(face_reasons)
    if ordered[0] < thresholds["min_probability"]:
        reasons.append(f"the top probability {ordered[0]:.1%} is below this model's threshold "
                       f"{thresholds['min_probability']:.1%}")
    if len(ordered) > 1 and ordered[0] - ordered[1] < thresholds["min_margin"]:
        reasons.append(f"the first two conditions are within {thresholds['min_margin']:.0%} of each other")
    return reasons
