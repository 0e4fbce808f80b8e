"""Calibrated confidence: temperature scaling, expected calibration error, and when to abstain."""
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

BINS = 10
DEFAULT_COVERAGE = 0.8    # abstention answers at least this share of held-out photos


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


def choose_temperature(probabilities, labels, folds):
    """Return (temperature, ECE before, ECE after): calibration is kept only when it lowers the held-out ECE.

    Each fold's predictions are rescaled with a temperature fitted on the other folds' predictions
    only, so the ECE after calibration is measured on predictions that played no part in it.
    """
    probabilities, labels = np.asarray(probabilities), np.asarray(labels)
    crossed = np.zeros_like(probabilities)
    for _, test in folds:
        rest = np.setdiff1d(np.arange(len(labels)), test)
        crossed[test] = apply_temperature(probabilities[test], fit_temperature(probabilities[rest], labels[rest]))
    before, after = reliability(probabilities, labels)[0], reliability(crossed, labels)[0]
    temperature = fit_temperature(probabilities, labels) if after < before else 1.0
    return temperature, before, after


def choose_thresholds(probabilities, labels, min_coverage=DEFAULT_COVERAGE):
    """Return the abstention thresholds that make the fewest errors while answering at least `min_coverage`.

    Both thresholds (top probability, margin to the runner-up) are searched over the held-out
    predictions' own values, so no model can refer more than 1 - min_coverage of them. Among
    equally accurate choices the one answering most wins; where abstaining does not lower the
    error rate, nothing is referred.
    """
    probabilities, labels = np.asarray(probabilities), np.asarray(labels)
    ordered = np.sort(probabilities, axis=1)
    top, margin = ordered[:, -1], ordered[:, -1] - ordered[:, -2]
    correct = probabilities.argmax(axis=1) == labels
    best = (np.inf, 0.0, 0.0, 0.0)
    for p_cut in _cuts(top, min_coverage):
        for m_cut in _cuts(margin, min_coverage):
            answered = (top >= p_cut) & (margin >= m_cut)
            if answered.mean() < min_coverage:
                continue
            candidate = (round(1.0 - correct[answered].mean(), 9), -answered.mean(), float(p_cut), float(m_cut))
            best = min(best, candidate)
    error, coverage, p_cut, m_cut = best
    return {"min_probability": p_cut, "min_margin": m_cut, "min_coverage": min_coverage,
            "coverage": float(-coverage), "error_when_answering": float(error)}


def _cuts(scores, min_coverage, most=60):
    """Return the cut-offs worth trying: the scores' own values that leave at least `min_coverage` above."""
    values = np.unique(scores)
    allowed = values[[np.mean(scores < v) <= 1 - min_coverage for v in values]]
    if len(allowed) > most:
        allowed = allowed[np.linspace(0, len(allowed) - 1, most).round().astype(int)]
    return np.concatenate([[0.0], allowed])


@dataclass(frozen=True)
class Thresholds:
    """What a prediction is held to: the lowest top probability, and the lowest margin over the runner-up."""
    min_probability: float
    min_margin: float

    @classmethod
    def of(cls, abstention):
        """Return the Thresholds of an abstention record (a card's or an administrator's), or `abstention` itself."""
        if isinstance(abstention, cls):
            return abstention
        return cls(float(abstention["min_probability"]), float(abstention["min_margin"]))


def decide(probabilities, thresholds, photo_reasons=()):
    """Return the reasons to abstain, in plain words: `photo_reasons` first, then the model's uncertainty.

    `thresholds`: Thresholds, or an abstention record as a card holds it. An empty list means a
    label may be given.
    """
    thresholds = Thresholds.of(thresholds)
    ordered = sorted(probabilities, reverse=True)
    reasons = list(photo_reasons)
    if ordered[0] < thresholds.min_probability:
        reasons.append(f"the model is not confident enough: its top probability {ordered[0]:.0%} is below the "
                       f"{thresholds.min_probability:.0%} under which it was often wrong in validation")
    if len(ordered) > 1 and ordered[0] - ordered[1] < thresholds.min_margin:
        reasons.append(f"the two most likely conditions are too close to call ({ordered[0]:.0%} and "
                       f"{ordered[1]:.0%}; validation needed a gap of at least {thresholds.min_margin:.0%})")
    return reasons
