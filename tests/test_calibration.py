import numpy as np

from ml.calibration import apply_temperature, choose_thresholds, decide, fit_temperature, reliability


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
    thresholds = choose_thresholds(probabilities, labels)
    assert thresholds["min_probability"] == 0.85 and thresholds["min_margin"] == 0.7
    perfect = choose_thresholds(probabilities, probabilities.argmax(axis=1))
    assert perfect == {"min_probability": 0.0, "min_margin": 0.1}


def test_abstention_on_an_ambiguous_result_or_a_doubtful_face():
    thresholds = {"min_probability": 0.6, "min_margin": 0.1}
    assert decide([0.8, 0.15, 0.05], thresholds) == []
    reasons = decide([0.5, 0.45, 0.05], thresholds)
    assert len(reasons) == 2 and "below this model's threshold" in reasons[0] and "within 10%" in reasons[1]
    assert decide([0.9, 0.1], thresholds, ["2 faces are in the photo"]) == ["2 faces are in the photo"]
