import numpy as np
import pytest

from ml.learning.calibration import (
    apply_temperature,
    choose_temperature,
    choose_thresholds,
    decide,
    fit_temperature,
    reliability,
)


def honest_and_overconfident(n=600, seed=0):
    """Return labels drawn from calibrated probabilities, and a sharpened (over-confident) copy."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.0, (n, 3))
    honest = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(3, p=row) for row in honest])
    return labels, apply_temperature(honest, 0.3)


def test_temperature_scaling_reduces_the_calibration_error_of_an_overconfident_model():
    labels, overconfident = honest_and_overconfident()
    fit_labels, fit_probabilities = labels[:300], overconfident[:300]       # fitted on one half ...
    temperature = fit_temperature(fit_probabilities, fit_labels)
    assert 2.0 < temperature < 5.0                                         # ~1 / 0.3
    before, _ = reliability(overconfident[300:], labels[300:])             # ... measured on the other
    after, bins = reliability(apply_temperature(overconfident[300:], temperature), labels[300:])
    assert after < before / 2
    assert sum(row[2] for row in bins) == 300
    calibrated = apply_temperature(overconfident, temperature)
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0)
    assert (calibrated.argmax(axis=1) == overconfident.argmax(axis=1)).all()   # rankings never change


def test_thresholds_come_from_held_out_predictions():
    probabilities = np.array([[0.95, 0.05], [0.9, 0.1], [0.85, 0.15], [0.6, 0.4], [0.55, 0.45], [0.52, 0.48]])
    labels = np.array([0, 0, 0, 1, 1, 0])           # confident ones right, unsure ones mostly wrong
    thresholds = choose_thresholds(probabilities, labels, min_coverage=0.5)
    assert [decide(row, thresholds) == [] for row in probabilities] == [True] * 3 + [False] * 3
    assert thresholds["error_when_answering"] == 0.0 and thresholds["coverage"] == 0.5
    perfect = choose_thresholds(probabilities, probabilities.argmax(axis=1))
    assert perfect["min_probability"] == 0.0 and perfect["min_margin"] == 0.0 and perfect["coverage"] == 1.0


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("floor", [0.8, 0.95])
def test_abstention_never_refers_more_than_the_coverage_floor_allows(seed, floor):
    rng = np.random.default_rng(seed)
    n, classes = int(rng.integers(20, 300)), int(rng.integers(2, 6))
    probabilities = rng.dirichlet(np.full(classes, rng.uniform(0.2, 3)), n)
    labels = rng.integers(0, classes, n)                 # a weak model: mostly wrong
    thresholds = choose_thresholds(probabilities, labels, floor)
    ordered = np.sort(probabilities, axis=1)
    answered = (ordered[:, -1] >= thresholds["min_probability"]) & \
        (ordered[:, -1] - ordered[:, -2] >= thresholds["min_margin"])
    assert answered.mean() >= floor and thresholds["coverage"] == pytest.approx(answered.mean(), abs=1e-4)
    assert all(decide(row, thresholds) == [] for row in probabilities[answered])


def test_calibration_is_dropped_when_it_raises_the_held_out_error():
    rng = np.random.default_rng(0)
    # One fold over-confident (says 90%, is right 60%), the other under-confident (says 60%, right 90%):
    # a temperature fitted on either makes the other worse.
    labels = rng.integers(0, 2, 400)
    right = np.concatenate([rng.random(200) < 0.6, rng.random(200) < 0.9])
    confidence = np.concatenate([np.full(200, 0.9), np.full(200, 0.6)])
    top = np.where(right, labels, 1 - labels)
    probabilities = np.zeros((400, 2))
    probabilities[np.arange(400), top] = confidence
    probabilities[np.arange(400), 1 - top] = 1 - confidence
    folds = [(np.arange(200, 400), np.arange(200)), (np.arange(200), np.arange(200, 400))]
    temperature, before, after = choose_temperature(probabilities, labels, folds)
    assert after > before and temperature == 1.0


def test_calibration_is_kept_when_it_lowers_the_held_out_error():
    labels, overconfident = honest_and_overconfident()
    folds = [(np.arange(300, 600), np.arange(300)), (np.arange(300), np.arange(300, 600))]
    temperature, before, after = choose_temperature(overconfident, labels, folds)
    assert after < before and temperature > 2.0


def test_abstention_on_an_ambiguous_result_or_a_doubtful_face():
    thresholds = {"min_probability": 0.6, "min_margin": 0.1}
    assert decide([0.8, 0.15, 0.05], thresholds) == []
    reasons = decide([0.5, 0.45, 0.05], thresholds)
    assert len(reasons) == 2 and "not confident enough" in reasons[0] and "too close to call" in reasons[1]
    assert decide([0.9, 0.1], thresholds, ["2 faces are in the photo"]) == ["2 faces are in the photo"]
