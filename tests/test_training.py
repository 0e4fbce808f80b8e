import keras
import numpy as np
import pytest

from ml.backbones import WeightsSource, build_vgg16
from ml.datasets import import_dataset
from ml.errors import TrainingError
from ml.registry import ModelRegistry
from ml.training import TrainingCancelled, TrainingOptions, split_indices, train
from tests.conftest import SMALL_TRAINING, SYNTHETIC_FACES, synthetic_entries, write_zip


@pytest.fixture
def colours(tmp_path):
    archive = write_zip(tmp_path / "c.zip", synthetic_entries(per_class=8))
    return import_dataset(archive, "colours", tmp_path / "datasets", face=SYNTHETIC_FACES)


def test_training_learns_the_task_and_writes_a_complete_card(trained):
    registry, version, dataset = trained
    card = version.card
    test = card["metrics"]["test"]
    assert test["accuracy"] >= 0.8, test          # chance is 1/3
    assert card["labels"] == ["alpha", "beta", "gamma"]
    assert card["weights"]["name"] == "none" and "tests only" in card["weights"]["note"]
    assert card["dataset"] == {"id": "colours", "checksum": dataset.manifest["checksum"], "images": 42}
    assert card["split"]["train"] + card["split"]["validation"] + card["split"]["test"] == 42
    assert card["image_size"] == 32 and card["face"] == {"detector": "haar", "fallback": "whole"}
    assert set(card["software"]) >= {"tensorflow", "keras", "numpy", "scikit-learn", "opencv"}
    assert set(test) >= {"accuracy", "macro_f1", "macro_roc_auc", "per_class", "confusion_matrix"}
    epochs = [e for e in card["history"] if e["phase"] == "head"]
    assert epochs and set(epochs[0]) >= {"epoch", "epochs", "loss", "accuracy", "val_loss", "val_accuracy"}


def test_split_is_stratified_disjoint_and_repeatable():
    labels = np.repeat([0, 1, 2], [10, 20, 30])
    options = TrainingOptions(weights="none")
    split = split_indices(labels, options)
    assert sum(len(i) for i in split.values()) == 60
    assert not set(split["test"]) & (set(split["train"]) | set(split["validation"]))
    assert list(np.bincount(labels[split["test"]])) == [2, 4, 6]
    again = split_indices(labels, options)
    assert all(np.array_equal(split[k], again[k]) for k in split)


def test_a_class_too_small_to_split_is_refused():
    with pytest.raises(TrainingError, match="at least 3 photos"):
        split_indices(np.array([0, 0, 1, 1, 1, 1]), TrainingOptions(weights="none"))


def test_features_are_cached_per_image_and_reused(tmp_path, colours):
    keras.utils.set_random_seed(3)
    weights = tmp_path / "vgg.weights.h5"
    build_vgg16(32, WeightsSource("none")).save_weights(weights)
    options = TrainingOptions(weights=str(weights), image_size=32, epochs=2)
    registry = ModelRegistry(tmp_path / "models")
    runs = []
    for _ in range(2):
        events = []
        train(colours, options, registry, progress=events.append)
        runs.append([e for e in events if e["phase"] == "features"])
    assert runs[0][0]["done"] == 0 and runs[0][-1]["done"] == 24
    assert runs[1] == [{"phase": "features", "done": 24, "total": 24}]     # nothing recomputed
    assert len(list((colours.path / "features").rglob("*.npy"))) == 24


def test_fine_tuning_runs_after_the_head(tmp_path, colours):
    options = TrainingOptions(weights="none", image_size=32, epochs=2, fine_tune_epochs=2)
    version = train(colours, options, ModelRegistry(tmp_path / "models"))
    phases = [e["phase"] for e in version.card["history"]]
    assert phases.index("fine-tune") > phases.index("head")


def test_a_cancelled_run_writes_nothing(tmp_path, colours):
    def cancel(event):
        if event.get("epoch") == 2:
            raise TrainingCancelled()
    registry = ModelRegistry(tmp_path / "models")
    with pytest.raises(TrainingCancelled):
        train(colours, SMALL_TRAINING, registry, progress=cancel)
    assert registry.versions() == [] and not any((tmp_path / "models").glob(".tmp-*"))


@pytest.mark.parametrize("options, message", [
    ({"learning_rate_typo": 1}, "Unknown training option"),
    ({"epochs": "many"}, "must be a whole number"),
    ({"epochs": 0}, "epochs must be"),
    ({"image_size": 8}, "image_size"),
    ({"test_fraction": 0.9}, "test_fraction"),
])
def test_bad_options_are_refused(options, message):
    with pytest.raises(TrainingError, match=message):
        TrainingOptions.from_dict(options)


def test_options_from_user_input_are_converted():
    options = TrainingOptions.from_dict({"weights": "none", "image_size": "64", "epochs": 3})
    assert options.image_size == 64 and options.epochs == 3
