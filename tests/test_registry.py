import json
import threading
from pathlib import Path

import keras
import pytest

from ml.errors import CardError, NoActiveModel, RegistryError, VersionBroken, VersionNotFound
from ml.versions.card import CARD_FORMAT, ModelCard
from ml.versions.registry import ModelRegistry
from tests.helpers import model_card


def tiny_model(folder):
    """Write a small Keras model into a version folder, as a training run writes its files."""
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")]).save(folder / "head.keras")
    return ["head.keras"]


def test_save_writes_a_complete_version_atomically(tmp_path):
    registry = ModelRegistry(tmp_path)
    version = registry.save(model_card(), tiny_model)
    assert (version.path / "head.keras").is_file()
    written = json.loads((version.path / "card.json").read_text())
    assert written["labels"] == ["a", "b"] and written["version"] == version.version and "created" in written
    assert written["files"] == ["head.keras"] and written["format"] == CARD_FORMAT
    assert registry.get(version.version).card == version.card
    assert [p.name for p in tmp_path.iterdir()] == [version.version]


def test_a_failed_save_leaves_nothing(tmp_path):
    def disk_full(folder):
        (folder / "head.keras").write_bytes(b"half a model")
        raise OSError("No space left on device")
    registry = ModelRegistry(tmp_path)
    with pytest.raises(OSError):
        registry.save(model_card(), disk_full)
    assert list(tmp_path.iterdir()) == [] and registry.versions() == []


def test_incomplete_folders_are_not_versions(tmp_path):
    registry = ModelRegistry(tmp_path)
    good = registry.save(model_card(), tiny_model)
    (tmp_path / "20260101-000000-abcdef").mkdir()
    missing_file = registry.save(model_card(), tiny_model)
    (missing_file.path / "head.keras").unlink()
    assert [v.version for v in registry.versions()] == [good.version]
    assert {b.version: b.problem for b in registry.broken()} == {
        missing_file.version: "missing files: head.keras", "20260101-000000-abcdef": "card.json is missing"}
    with pytest.raises(RegistryError):
        registry.activate("20260101-000000-abcdef")


@pytest.mark.parametrize("version", ["../../etc", "", "20260101-000000-zzzzzz", None, "20260101-000000-abcdef\n"])
def test_unknown_versions_are_refused(tmp_path, version):
    with pytest.raises(RegistryError, match="no complete model version"):
        ModelRegistry(tmp_path).get(version)


def test_activate_and_roll_back(tmp_path):
    registry = ModelRegistry(tmp_path)
    with pytest.raises(NoActiveModel):
        registry.active()
    first, second = registry.save(model_card(), tiny_model), registry.save(model_card(), tiny_model)
    registry.activate(first.version)
    registry.activate(second.version)
    assert registry.active().version == second.version
    assert registry.rollback() == first.version
    assert registry.active().version == first.version
    with pytest.raises(RegistryError, match="no earlier"):
        registry.rollback()


def test_concurrent_activations_leave_one_valid_pointer(tmp_path):
    registry = ModelRegistry(tmp_path)
    versions = [registry.save(model_card(), tiny_model).version for _ in range(2)]
    threads = [threading.Thread(target=registry.activate, args=(versions[i % 2],)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert registry.active().version in versions
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".active.json.")]


@pytest.mark.parametrize("damage", ["{not json", "[]", '{"labels": ["a", "b"]}', '{"format": 99}',
                                    '{"format": "2"}', b"\xff\xfe"])
def test_a_damaged_card_marks_only_its_own_version_broken(tmp_path, damage):
    registry = ModelRegistry(tmp_path)
    good, bad = registry.save(model_card(), tiny_model), registry.save(model_card(), tiny_model)
    target = bad.path / "card.json"
    target.write_bytes(damage) if isinstance(damage, bytes) else target.write_text(damage)
    assert [v.version for v in registry.versions()] == [good.version]
    [broken] = registry.broken()
    assert broken.version == bad.version and "card.json" in broken.problem and str(tmp_path) not in broken.problem
    with pytest.raises(VersionBroken, match="damaged"):
        registry.activate(bad.version)
    registry.activate(good.version)
    assert registry.active().version == good.version


def test_a_card_from_a_newer_release_is_refused_by_name():
    with pytest.raises(CardError, match="format 3, newer"):
        ModelCard.from_dict(model_card().to_dict() | {"format": 3})


def test_a_format_1_card_loads_with_defaults():
    old = {k: v for k, v in model_card().to_dict().items() if k not in ("format", "pipeline", "novelty", "calibration")}
    loaded = ModelCard.from_dict(old)
    assert loaded.format == 1 and loaded.pipeline is None and loaded.blocks == ["hog"]
    assert loaded.calibration == {"temperature": 1.0} and loaded.novelty is None
    assert loaded.usefulness["useful"] is True


@pytest.mark.parametrize("field, value", [("labels", ["only one"]), ("metrics", {"per_class": {}, "accuracy": "high"}),
                                          ("abstention", {"min_probability": float("nan"), "min_margin": 0.1}),
                                          ("backbone", {"name": 7}), ("created", 12345), ("created", "yesterday"),
                                          ("version", ["x"]), ("image_size", "224"), ("pipeline", "fused"),
                                          ("novelty", 3), ("imported", "yes"), ("training_seconds", "long"),
                                          ("files", [7]), ("conversions", {})])
def test_a_card_with_a_damaged_field_names_it(field, value):
    with pytest.raises(CardError, match=field):
        ModelCard.from_dict(model_card().to_dict() | {field: value})


@pytest.mark.parametrize("damage", ["{not json", "[]", '{"version": 7}', '{"version": "x", "history": "abc"}', ""])
def test_a_damaged_pointer_stops_serving_and_activation_repairs_it(tmp_path, damage):
    registry = ModelRegistry(tmp_path)
    first, second = registry.save(model_card(), tiny_model), registry.save(model_card(), tiny_model)
    registry.activate(first.version)
    (tmp_path / "active.json").write_text(damage)
    assert registry.pointer().get("version") is None and "damaged" in registry.pointer()["damaged"]
    with pytest.raises(NoActiveModel) as refused:
        registry.active()
    assert str(tmp_path) not in str(refused.value)
    registry.activate(second.version)
    assert registry.active().version == second.version and registry.pointer()["history"] == []


def test_a_pointer_replaced_by_a_folder_is_moved_aside_when_a_version_is_activated(tmp_path):
    registry = ModelRegistry(tmp_path)
    first = registry.save(model_card(), tiny_model)
    (tmp_path / "active.json").mkdir()
    (tmp_path / "active.json" / "left.txt").write_text("whatever was put here")
    assert "damaged" in registry.pointer()
    registry.activate(first.version)
    assert registry.active().version == first.version and (tmp_path / "active.json").is_file()
    (aside,) = tmp_path.glob(".active.json.damaged-*")           # kept, not deleted, and not a version
    assert (aside / "left.txt").read_text() == "whatever was put here"
    assert [v.version for v in registry.versions()] == [first.version] and not registry.broken()


def test_a_damaged_administrator_threshold_file_falls_back_to_the_trained_thresholds(tmp_path):
    registry = ModelRegistry(tmp_path)
    version = registry.save(model_card(), tiny_model)
    (version.path / "abstention.json").write_text('{"min_probability": "x"')
    assert registry.thresholds(version.version) == version.card.abstention


def test_get_says_not_found_for_a_missing_version(tmp_path):
    with pytest.raises(VersionNotFound):
        ModelRegistry(tmp_path).get("20260101-000000-abcdef")


@pytest.mark.parametrize("write", ["activate", "thresholds"])
def test_a_full_disk_while_the_pointer_or_thresholds_are_written_leaves_no_staging_file(tmp_path, monkeypatch,
                                                                                      write):
    import errno

    import ml.versions.registry

    registry = ModelRegistry(tmp_path)
    version = registry.save(model_card(), tiny_model)

    def disk_full(path, text):
        Path(path).write_text(text[:3])
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(ml.versions.registry, "_write_durably", disk_full)
    with pytest.raises(OSError):
        registry.activate(version.version) if write == "activate" else \
            registry.set_thresholds(version.version, 0.5, 0.1)
    leftovers = [p.name for p in tmp_path.rglob(".*") if p.name not in (".active.lock",)]
    assert leftovers == [] and registry.pointer() == {}


def test_a_version_that_is_not_active_can_be_deleted_a_damaged_one_too(tmp_path):
    from ml.errors import VersionActive

    registry = ModelRegistry(tmp_path)
    first, second, third = (registry.save(model_card(), tiny_model) for _ in range(3))
    registry.activate(first.version)
    registry.activate(second.version)
    with pytest.raises(VersionActive, match="active one"):
        registry.delete(second.version)
    registry.delete(first.version)                       # in the roll-back history: skipped from now on
    (third.path / "card.json").write_text('{"created": 12345}')
    assert [b.version for b in registry.broken()] == [third.version]
    registry.delete(third.version)
    assert [v.version for v in registry.versions()] == [second.version] and not registry.broken()
    assert not list(tmp_path.glob(".delete-*"))
    with pytest.raises(VersionNotFound):
        registry.delete(first.version)
    with pytest.raises(RegistryError, match="no earlier active version"):
        registry.rollback()
