"""The model card's metrics: a typed record that round-trips a card's JSON unchanged."""
import json

import pytest

from ml.errors import CardError
from ml.versions.card import ModelCard
from ml.versions.metrics import Metrics

CARD = {"labels": ["a", "b"], "backbone": {"name": "hog", "weights": {}}, "head": "linear", "face": {},
        "dataset": {"id": "d"}, "abstention": {"min_probability": 0.0, "min_margin": 0.0}}


def test_metrics_are_read_by_name_and_written_back_as_they_were():
    figures = {"per_class": {"a": {"support": 3}}, "accuracy": 0.75, "macro_f1": 0.7, "accuracy_std": None,
               "method": "held-out", "split": {"test": 4}, "from_a_newer_release": [1, 2]}
    card = ModelCard.from_dict(dict(CARD, metrics=figures))
    metrics = card.metrics
    assert isinstance(metrics, Metrics)
    assert (metrics.accuracy, metrics.method, metrics.split) == (0.75, "held-out", {"test": 4})
    assert metrics.accuracy_std is None
    assert (metrics.grouped, metrics.note, metrics.baselines, metrics.clinical) == (False, "", {}, None)   # older cards
    written = card.to_dict()["metrics"]
    assert json.dumps(written) == json.dumps(figures)               # same keys, same order, nulls and unknowns kept
    assert ModelCard.from_dict(json.loads(json.dumps(card.to_dict()))) == card
    changed = metrics.replace(note="one split")
    assert list(changed.to_dict())[-1] == "note" and changed.to_dict()["note"] == "one split"


@pytest.mark.parametrize("metrics, message", [
    ([1, 2], "metrics is missing or not a dict"),
    ({"per_class": {}, "macro_f1": 0.5}, "metrics.accuracy is missing or not a finite number"),
    ({"accuracy": 0.5, "macro_f1": 0.5}, "metrics.per_class is missing or not a dict"),
])
def test_damaged_metrics_are_refused_by_name(metrics, message):
    with pytest.raises(CardError, match=message):
        ModelCard.from_dict(dict(CARD, metrics=metrics))
