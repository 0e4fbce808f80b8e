import numpy as np
import pytest

from ml.learning.evaluation import clinical_figures, evaluate, subgroup_figures, wilson_interval


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


@pytest.mark.parametrize("k, n, low, high", [(8, 10, 0.490, 0.943), (0, 10, 0.0, 0.278), (10, 10, 0.722, 1.0),
                                             (50, 100, 0.404, 0.596), (0, 0, 0.0, 1.0)])
def test_wilson_interval_of_known_shares(k, n, low, high):
    assert wilson_interval(k, n) == pytest.approx((low, high), abs=5e-4)


def test_sensitivity_and_specificity_per_condition():
    figures = clinical_figures([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2], ["a", "b", "c", "d"])
    assert figures["a"]["sensitivity"] == {"value": pytest.approx(2 / 3), "low": pytest.approx(0.208, abs=1e-3),
                                           "high": pytest.approx(0.939, abs=1e-3), "k": 2, "n": 3}
    assert [(figures[label]["sensitivity"]["k"], figures[label]["sensitivity"]["n"]) for label in "abc"] == [
        (2, 3), (1, 2), (1, 1)]
    assert [(figures[label]["specificity"]["k"], figures[label]["specificity"]["n"]) for label in "abcd"] == [
        (3, 3), (3, 4), (4, 5), (6, 6)]
    assert figures["d"]["sensitivity"] == {"value": None, "low": 0.0, "high": 1.0, "k": 0, "n": 0}


def outcomes(n, right):
    return [True] * right + [False] * (n - right)


def test_a_subgroup_twenty_points_below_the_rest_is_flagged_and_five_points_is_not():
    correct = outcomes(20, 12) + outcomes(20, 16) + outcomes(20, 15) + outcomes(20, 16) + [False] * 5
    attributes = ([{"sex": " F"} if i % 2 else {"sex": "f"} for i in range(20)] + [{"sex": "m"}] * 20
                  + [{"ancestry": "A "}] * 20 + [{"ancestry": "b"}] * 20 + [{}] * 5)
    ages = {0: 0.5, 1: 2.99, 2: 3.0, 21: 12.9, 22: 13.0, 41: 17.99, 42: 18.0, 61: 90.0}
    for i, age in ages.items():
        attributes[i] = dict(attributes[i], age=age)
    rows = {(r["attribute"], r["group"]): r for r in subgroup_figures(correct, attributes)}
    assert list(rows) == [("sex", "f"), ("sex", "m"), ("age", "0-2"), ("age", "3-12"), ("age", "13-17"),
                          ("age", "18+"), ("ancestry", "a"), ("ancestry", "b")]
    female = rows["sex", "f"]
    assert (female["n"], female["accuracy"], female["rest_accuracy"], female["below_rest"]) == (20, 0.6, 0.8, True)
    assert female["low"] < 0.6 < female["high"]
    assert not rows["sex", "m"]["below_rest"]
    assert rows["ancestry", "a"]["rest_accuracy"] - rows["ancestry", "a"]["accuracy"] == pytest.approx(0.05)
    assert not rows["ancestry", "a"]["below_rest"] and not rows["ancestry", "b"]["below_rest"]
    assert {group: rows["age", group]["n"] for group in ("0-2", "3-12", "13-17", "18+")} == {
        "0-2": 2, "3-12": 2, "13-17": 2, "18+": 2}


def test_subgroups_at_the_edges():
    assert subgroup_figures([True, False], [{}, {}]) == []
    alone = subgroup_figures([True, False], [{"sex": "x"}, {}])
    assert alone == [{"attribute": "sex", "group": "x", "n": 1, "accuracy": 1.0, "low": pytest.approx(0.207, abs=1e-3),
                      "high": 1.0, "rest_accuracy": None, "below_rest": False}]
    exactly_ten = subgroup_figures(outcomes(10, 7) + outcomes(10, 8), [{"sex": "f"}] * 10 + [{"sex": "m"}] * 10)
    assert [r["below_rest"] for r in exactly_ten] == [False, False]
