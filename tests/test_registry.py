import json
import threading

import keras
import pytest

from ml.errors import NoActiveModel, RegistryError
from ml.registry import ModelRegistry


def tiny_model(folder):
    """Write a small Keras model into a version folder, as a training run writes its files."""
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")]).save(folder / "head.keras")
    return ["head.keras"]


def test_save_writes_a_complete_version_atomically(tmp_path):
    registry = ModelRegistry(tmp_path)
    version = registry.save({"labels": ["a", "b"]}, tiny_model)
    assert (version.path / "head.keras").is_file()
    card = json.loads((version.path / "card.json").read_text())
    assert card["labels"] == ["a", "b"] and card["version"] == version.version and "created" in card
    assert card["files"] == ["head.keras"]
    assert [p.name for p in tmp_path.iterdir()] == [version.version]


def test_a_failed_save_leaves_nothing(tmp_path):
    def disk_full(folder):
        (folder / "head.keras").write_bytes(b"half a model")
        raise OSError("No space left on device")
    registry = ModelRegistry(tmp_path)
    with pytest.raises(OSError):
        registry.save({}, disk_full)
    assert list(tmp_path.iterdir()) == [] and registry.versions() == []


def test_incomplete_folders_are_not_versions(tmp_path):
    registry = ModelRegistry(tmp_path)
    good = registry.save({}, tiny_model)
    (tmp_path / "20260101-000000-abcdef").mkdir()
    missing_file = registry.save({}, tiny_model)
    (missing_file.path / "head.keras").unlink()
    assert [v.version for v in registry.versions()] == [good.version]
    with pytest.raises(RegistryError):
        registry.activate("20260101-000000-abcdef")


@pytest.mark.parametrize("version", ["../../etc", "", "20260101-000000-zzzzzz", None])
def test_unknown_versions_are_refused(tmp_path, version):
    with pytest.raises(RegistryError, match="no complete model version"):
        ModelRegistry(tmp_path).get(version)


def test_activate_and_roll_back(tmp_path):
    registry = ModelRegistry(tmp_path)
    with pytest.raises(NoActiveModel):
        registry.active()
    first, second = registry.save({}, tiny_model), registry.save({}, tiny_model)
    registry.activate(first.version)
    registry.activate(second.version)
    assert registry.active().version == second.version
    assert registry.rollback() == first.version
    assert registry.active().version == first.version
    with pytest.raises(RegistryError, match="no earlier"):
        registry.rollback()


def test_concurrent_activations_leave_one_valid_pointer(tmp_path):
    registry = ModelRegistry(tmp_path)
    versions = [registry.save({}, tiny_model).version for _ in range(2)]
    threads = [threading.Thread(target=registry.activate, args=(versions[i % 2],)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert registry.active().version in versions
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".active.json.")]
