import numpy as np
import pytest

from ml.evaluation import evaluate


def test_metrics_of_a_known_result():
    y_true = [0, 0, 1, 1, 2, 2]
    probabilities = np.array([[.8, .1, .1], [.2, .7, .1], [.1, .8, .1], [.1, .6, .3], [.1, .2, .7], [.2, .1, .7]])
    metrics = evaluate(y_true, probabilities, ["a", "b", "c"])
    assert metrics["accuracy"] == pytest.approx(5 / 6)
    assert metrics["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [0, 0, 2]]
    assert metrics["per_class"]["a"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert metrics["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert 0.5 < metrics["macro_roc_auc"] <= 1.0
    assert metrics["n"] == 6


def test_binary_auc_and_a_missing_class():
    perfect = evaluate([0, 1, 1], np.array([[.9, .1], [.3, .7], [.2, .8]]), ["x", "y"])
    assert perfect["macro_roc_auc"] == 1.0
    missing = evaluate([0, 0], np.array([[.9, .1], [.6, .4]]), ["x", "y"])
    assert missing["macro_roc_auc"] is None
