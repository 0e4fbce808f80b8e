"""Faults: broken model folders, a full disk, racing administrators, restarts in every job state."""
import errno
import shutil
import threading

import pytest

from ml import registry as registry_module
from ml.predictor import Predictor
from ml.registry import ModelRegistry
from ml.training import train
from tests.conftest import SMALL_TRAINING, bearer_headers, clone_version


def test_a_corrupt_active_model_reports_not_ready_and_recovers(app, client, tokens, trained):
    from web import get_registry

    version = trained[1]
    with app.app_context():
        registry = get_registry()
        shutil.copytree(version.path, registry.root / version.version)
        (registry.root / version.version / "backbone.keras").write_bytes(b"corrupt")
        registry.activate(version.version)
    for _ in range(3):                                   # asked again and again: never a crash
        assert client.get("/api/v1/health").status_code == 503
    with app.app_context():
        good = clone_version(ModelRegistry(version.path.parent), version.version)
        shutil.copytree(version.path.parent / good, registry.root / good)
        registry.activate(good)
    assert client.get("/api/v1/health").get_json() == {"status": "ok", "model_version": good}


def test_a_version_with_a_missing_file_cannot_be_activated(app, client, tokens, trained):
    from web import get_registry

    version = trained[1]
    with app.app_context():
        registry = get_registry()
        shutil.copytree(version.path, registry.root / version.version)
        (registry.root / version.version / "head.npz").unlink()
    response = client.post(f"/api/v1/models/{version.version}/activate", headers=bearer_headers(tokens["admin"]))
    assert response.status_code == 404 and client.get("/api/v1/models", headers=bearer_headers(
        tokens["admin"])).get_json()["models"] == []


def test_a_full_disk_while_a_version_is_written_leaves_no_trace(tmp_path, trained, monkeypatch):
    _, version, dataset = trained
    registry = ModelRegistry(tmp_path / "models")
    registry.root.mkdir()
    shutil.copytree(version.path, registry.root / version.version)
    registry.activate(version.version)

    def disk_full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(registry_module, "_write_durably", disk_full)
    with pytest.raises(OSError, match="No space left"):
        train(dataset, SMALL_TRAINING, registry)
    monkeypatch.undo()
    assert [v.version for v in registry.versions()] == [version.version]
    assert registry.active().version == version.version
    assert not [p for p in registry.root.iterdir() if p.name.startswith(".tmp-")]


def test_racing_activations_leave_every_worker_serving_the_same_version(tmp_path, trained):
    source = trained[1]
    registry = ModelRegistry(tmp_path / "models")
    registry.root.mkdir()
    shutil.copytree(source.path, registry.root / source.version)
    versions = [source.version, clone_version(registry, source.version)]
    registry.activate(versions[0])
    workers = [Predictor(ModelRegistry(registry.root)) for _ in range(2)]      # two gunicorn workers
    for worker in workers:
        worker.current()
    admins = [threading.Thread(target=registry.activate, args=(versions[i % 2],)) for i in range(10)]
    for admin in admins:
        admin.start()
    for admin in admins:
        admin.join()
    winner = registry.active().version
    assert {worker.current().version for worker in workers} == {winner}


@pytest.mark.parametrize("state, after_restart", [("queued", "failed"), ("running", "failed"),
                                                  ("succeeded", "succeeded"), ("failed", "failed"),
                                                  ("cancelled", "cancelled")])
def test_a_restart_in_every_job_state(tmp_path, monkeypatch, state, after_restart):
    from flask_migrate import upgrade

    from app import create_app
    from web.db import TrainingJob, db
    from web.jobs import DIED

    monkeypatch.setenv("FACEDX_DATA_DIR", str(tmp_path / "data"))
    first = create_app({"TESTING": True})
    with first.app_context():
        upgrade()
        db.session.add(TrainingJob(dataset="d", options_json="{}", status=state, pid=2 ** 22 + 7,
                                   error="earlier error" if state == "failed" else None))
        db.session.commit()
    restarted = create_app({"TESTING": True})                   # a new server on the same data
    result = restarted.test_cli_runner().invoke(args=["setup"])
    assert result.exit_code == 0
    with restarted.app_context():
        job = db.session.execute(db.select(TrainingJob)).scalar_one()
        assert job.status == after_restart
        if state in ("queued", "running"):
            assert job.error == DIED
