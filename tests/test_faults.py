"""Faults: broken model folders, a full disk, racing administrators, restarts, jobs whose process is gone."""
import errno
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from ml.learning.training import train
from ml.serving.predictor import Predictor
from ml.versions import registry as registry_module
from ml.versions.registry import ModelRegistry
from tests.helpers import (PROJECT, SMALL_API_OPTIONS, SMALL_TRAINING, bearer_headers, clone_version, database_full,
                           form_token, import_here, import_result, login, synthetic_entries, write_zip)


def test_a_corrupt_active_model_reports_not_ready_and_recovers(app, client, tokens, trained):
    from web.services import get_registry

    version = trained.version
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
    from web.services import get_registry

    version = trained.version
    with app.app_context():
        registry = get_registry()
        shutil.copytree(version.path, registry.root / version.version)
        (registry.root / version.version / "head.npz").unlink()
    response = client.post(f"/api/v1/models/{version.version}/activate", headers=bearer_headers(tokens["admin"]))
    assert response.status_code == 409 and "missing files: head.npz" in response.get_json()["message"]
    listed = client.get("/api/v1/models", headers=bearer_headers(tokens["admin"])).get_json()
    assert listed["models"] == [] and listed["broken"][0]["version"] == version.version


def test_a_full_disk_while_a_version_is_written_leaves_no_trace(tmp_path, trained, monkeypatch):
    version, dataset = trained.version, trained.dataset
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
    source = trained.version
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
    from web.db import db
    from web.jobs.records import DIED
    from web.records import Job

    monkeypatch.setenv("FACEDX_DATA_DIR", str(tmp_path / "data"))
    first = create_app({"TESTING": True})
    with first.app_context():
        upgrade()
        db.session.add(Job(dataset="d", options_json="{}", status=state, pid=2 ** 22 + 7,
                                   error="earlier error" if state == "failed" else None))
        db.session.commit()
    restarted = create_app({"TESTING": True})                   # a new server on the same data
    result = restarted.test_cli_runner().invoke(args=["setup"])
    assert result.exit_code == 0
    with restarted.app_context():
        job = db.session.execute(db.select(Job)).scalar_one()
        assert job.status == after_restart
        if state in ("queued", "running"):
            assert job.error == DIED


# Disk full: a clear 507, never a 500, and nothing half-written.

DISK_FULL_MESSAGE = "The server's disk is full, so nothing was saved. Free space on it, then try again."


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def post_archive(client, token, name="colours"):
    archive = io.BytesIO(write_zip(io.BytesIO(), synthetic_entries(per_class=5)).getvalue())
    return client.post("/api/v1/datasets", headers=bearer_headers(token), content_type="multipart/form-data",
                       data={"archive": (archive, "data.zip"), "name": name, "face_fallback": "whole"})


def import_small_dataset(client, token):
    """Import a small dataset named colours through the API; return the import's final state."""
    return import_result(client, bearer_headers(token), post_archive(client, token))


def data_files(app):
    """Return every file under uploads/ (datasets, staging folders, temporary uploads)."""
    root = Path(app.config["UPLOAD_DIR"])
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture
def haar(app):
    app.config["FACE_DETECTOR"] = "haar"         # the generated photos hold no face: the fast detector will do
    return app


@pytest.fixture
def held(haar):
    """Keep the app's jobs from starting: the test runs each in its own process with run_in_test()."""
    from web.jobs.dispatch import LocalDispatcher

    class Held(LocalDispatcher):
        def submit(self, job, settings):
            return None
    haar.extensions["facedx.dispatcher"] = Held(haar.config["INSTANCE_DIR"])
    return haar


def run_in_test(app, response):
    """Run the job an accepted request started, in this process (where the test's faults apply)."""
    import worker
    from web.jobs.records import job_settings

    return worker.run_job(response.get_json()["id"], job_settings(app.config))


def test_a_full_disk_during_an_import_fails_it_with_the_reason_and_leaves_nothing(held, client, tokens,
                                                                                  monkeypatch):
    response = post_archive(client, tokens["admin"])
    monkeypatch.setattr(Path, "write_bytes", no_space)
    assert run_in_test(held, response) == "failed"
    monkeypatch.undo()
    job = client.get(response.headers["Location"], headers=bearer_headers(tokens["admin"])).get_json()
    assert job["error"] == DISK_FULL_MESSAGE
    assert data_files(held) == []
    assert client.get("/api/v1/datasets", headers=bearer_headers(tokens["admin"])).get_json()["datasets"] == []


def test_a_full_database_after_an_import_undoes_it(held, client, tokens):
    response = post_archive(client, tokens["admin"])
    with database_full(held, "audit_event"):
        assert run_in_test(held, response) == "failed"
    job = client.get(response.headers["Location"], headers=bearer_headers(tokens["admin"])).get_json()
    assert job["error"] == DISK_FULL_MESSAGE and data_files(held) == []
    again = post_archive(client, tokens["admin"])
    assert run_in_test(held, again) == "succeeded"                         # once there is space, it imports


def test_a_full_disk_while_an_upload_is_kept_shows_the_administrator_a_page_that_says_so(haar, client, tokens,
                                                                                      monkeypatch):
    from werkzeug.datastructures import FileStorage

    login(client, "ada")
    token = form_token(client, "/admin/datasets")
    archive = write_zip(io.BytesIO(), synthetic_entries(per_class=5)).getvalue()
    monkeypatch.setattr(FileStorage, "save", no_space)
    response = client.post("/admin/datasets", content_type="multipart/form-data", data={
        "name": "colours", "face_fallback": "whole", "archive": (io.BytesIO(archive), "a.zip"), "csrf_token": token})
    assert response.status_code == 507 and DISK_FULL_MESSAGE.replace("'", "&#39;") in response.get_data(as_text=True)
    assert data_files(haar) == []


def test_a_full_database_when_training_starts_answers_507_and_records_no_job(haar, client, tokens):
    admin = bearer_headers(tokens["admin"])
    import_here(haar, "colours", per_class=5)
    with database_full(haar, "training_job"):
        response = client.post("/api/v1/training-jobs", headers=admin, json={"dataset": "colours",
                                                                            "options": SMALL_API_OPTIONS})
    assert response.status_code == 507 and response.get_json()["message"] == DISK_FULL_MESSAGE
    assert client.get("/api/v1/training-jobs", headers=admin).get_json()["jobs"] == []


def test_a_full_database_shows_the_training_page_that_says_so(haar, client, tokens):
    import_here(haar, "colours", per_class=5)
    login(client, "ada")
    token = form_token(client, "/admin/training")
    with database_full(haar, "training_job"):
        response = client.post("/admin/training", data=dict(SMALL_API_OPTIONS, dataset="colours", csrf_token=token))
    page = response.get_data(as_text=True)
    assert response.status_code == 507 and DISK_FULL_MESSAGE.replace("'", "&#39;") in page and "ada" in page


def test_a_full_disk_during_an_activation_answers_507_and_keeps_the_active_version(app, client, tokens, trained,
                                                                                   monkeypatch):
    from web.services import get_registry

    version = trained.version
    with app.app_context():
        registry = get_registry()
        shutil.copytree(version.path, registry.root / version.version)
        other = clone_version(registry, version.version)
        registry.activate(version.version)
    monkeypatch.setattr(registry_module, "_write_durably", no_space)
    response = client.post(f"/api/v1/models/{other}/activate", headers=bearer_headers(tokens["admin"]))
    assert response.status_code == 507 and response.get_json()["message"] == DISK_FULL_MESSAGE
    with app.app_context():
        assert get_registry().active().version == version.version


def test_of_two_simultaneous_imports_the_second_gets_409(held, tokens):
    start = threading.Barrier(2)
    responses = []

    def import_colours():
        client = held.test_client()
        start.wait()
        responses.append(post_archive(client, tokens["admin"]))
    importers = [threading.Thread(target=import_colours) for _ in range(2)]
    for importer in importers:
        importer.start()
    for importer in importers:
        importer.join()
    assert sorted(r.status_code for r in responses) == [202, 409]
    refused = next(r for r in responses if r.status_code == 409).get_json()["message"]
    assert "one dataset import runs at a time" in refused
    assert run_in_test(held, next(r for r in responses if r.status_code == 202)) == "succeeded"
    assert data_files(held) == sorted(f"datasets/colours/{name}" for name in
                                      ["dataset.json"] + [f"{i}/{n:05d}.png" for i in range(3) for n in range(1, 6)])


# Job liveness: the heartbeat decides, whatever the recorded pid says.

@pytest.fixture
def unrelated_process():
    """Return the pid of a live process that is no training: what a recorded pid may name after a restart."""
    process = subprocess.Popen(["sleep", "600"])
    yield process.pid
    process.kill()
    process.wait()


def record_job(app, **fields):
    """Store a training job as a server that has since restarted left it; return its id."""
    from web.db import db
    from web.records import Job

    with app.app_context():
        job = Job(dataset="colours", options_json="{}", **fields)
        db.session.add(job)
        db.session.commit()
        return job.id


def seconds_ago(seconds):
    from web.records import utcnow

    return utcnow() - timedelta(seconds=seconds)


@pytest.mark.parametrize("state, process, beat, created, after", [
    ("running", "live", 0, 600, "running"),       # beating: still tracked after a restart
    ("running", "live", 120, 600, "failed"),      # silent for longer than the timeout (60 s)
    ("queued", "live", None, 0, "queued"),        # its process is still starting
    ("queued", "live", None, 120, "failed"),      # started long ago and never beat
    ("running", "gone", 0, 600, "failed"),        # its process ended: no need to wait for the heartbeat
])
def test_a_local_job_lives_by_its_heartbeat_whatever_its_pid_says(app, client, tokens, unrelated_process, state,
                                                                   process, beat, created, after):
    from web.jobs.records import DIED

    pid = unrelated_process if process == "live" else 2 ** 22 + 7
    job_id = record_job(app, status=state, pid=pid, created_at=seconds_ago(created),
                        heartbeat_at=None if beat is None else seconds_ago(beat))
    job = client.get(f"/api/v1/training-jobs/{job_id}", headers=bearer_headers(tokens["admin"])).get_json()
    assert job["status"] == after and job.get("error") == (DIED if after == "failed" else None)


def test_a_job_whose_pid_was_reused_is_failed_and_cancel_says_so(app, client, tokens):
    from web.jobs.records import DIED

    admin = bearer_headers(tokens["admin"])
    stale = record_job(app, status="running", pid=os.getpid(), created_at=seconds_ago(3600),
                       heartbeat_at=seconds_ago(600))
    assert client.get(f"/api/v1/training-jobs/{stale}", headers=admin).get_json()["error"] == DIED
    refused = client.post(f"/api/v1/training-jobs/{stale}/cancel", headers=admin)
    assert refused.status_code == 409 and refused.get_json()["message"] == (
        f"Training job {stale} has already ended (failed); there is nothing to cancel.")


# What a gunicorn worker does when it starts a training; then it exits, as a worker does on a restart.
WEB_WORKER = """
import json, sys
from app import create_app
from web.training.actions import start_training
with create_app({"TESTING": True}).app_context():
    print(start_training("ada", "colours", json.loads(sys.argv[1])).id)
"""


def test_a_new_job_starts_after_a_dead_one_and_outlives_its_restarted_web_worker(haar, client, tokens, tmp_path):
    from web.db import db
    from web.records import Job

    admin = bearer_headers(tokens["admin"])
    dead = record_job(haar, status="running", pid=os.getpid(), created_at=seconds_ago(3600),
                      heartbeat_at=seconds_ago(600))                 # its pid names a live process: this one
    assert import_small_dataset(client, tokens["admin"])["status"] == "succeeded"
    options = dict(SMALL_API_OPTIONS, head="softmax", epochs=1000, patience=1000)     # runs until it is stopped
    output, log = tmp_path / "worker.out", tmp_path / "worker.log"   # files, not pipes: the training inherits them
    try:
        with open(output, "w") as stdout, open(log, "w") as stderr:
            worker = subprocess.run([sys.executable, "-c", WEB_WORKER, json.dumps(options)], cwd=PROJECT,
                                    stdout=stdout, stderr=stderr, timeout=120)
        assert worker.returncode == 0, log.read_text()
        job_id = int(output.read_text())
        deadline = time.monotonic() + 120
        while True:                       # the web worker is gone; its training goes on, beating
            with haar.app_context():
                job = db.session.get(Job, job_id)
                if job.status == "running" and job.heartbeat_at is not None:
                    break
                assert job.active and time.monotonic() < deadline, (job.status, job.error)
            time.sleep(0.3)
        assert client.post(f"/api/v1/training-jobs/{job_id}/cancel", headers=admin).status_code == 202
        assert wait_for_end(client, admin, job_id) == "cancelled"
        assert client.get(f"/api/v1/training-jobs/{dead}", headers=admin).get_json()["status"] == "failed"
    finally:
        with haar.app_context():          # never leave a training running after the test
            db.session.execute(db.update(Job).values(cancel_requested=True))
            db.session.commit()


def wait_for_end(client, headers, job_id):
    """Return the state a job ends in."""
    deadline = time.monotonic() + 240
    while (status := client.get(f"/api/v1/training-jobs/{job_id}", headers=headers).get_json()["status"]) in (
            "queued", "running"):
        assert time.monotonic() < deadline, f"job {job_id} still {status}"
        time.sleep(0.3)
    return status


@pytest.mark.parametrize("redis", ["refused", "frozen"])
def test_a_job_queue_that_is_down_or_frozen_gets_503_with_the_reason_and_starts_nothing(tmp_path, monkeypatch, redis):
    import socket

    from flask_migrate import upgrade

    from app import create_app
    from tests.helpers import free_port, make_user
    from web.db import db
    from web.records import Job

    listener = None
    if redis == "frozen":                       # accepts connections (the kernel does) and never answers
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
    else:
        port = free_port()
    monkeypatch.setenv("FACEDX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FACEDX_REDIS_URL", f"redis://127.0.0.1:{port}/0")
    app = create_app({"TESTING": True})
    with app.app_context():
        upgrade()
    token = make_user(app, "ada", "admin")
    archive = write_zip(tmp_path / "a.zip", {f"{label}/{i}.png": b"x" for label in ("a", "b") for i in range(5)})
    try:
        with open(archive, "rb") as stream:
            response = app.test_client().post("/api/v1/datasets", headers=bearer_headers(token),
                                              data={"archive": (stream, "a.zip"), "name": "queued"},
                                              content_type="multipart/form-data")
    finally:
        if listener is not None:
            listener.close()
    assert response.status_code == 503 and "job queue (Redis) cannot be reached" in response.get_json()["message"]
    with app.app_context():
        assert not db.session.execute(db.select(Job).filter(Job.status.in_(("queued", "running")))
                                      ).scalars().all()
    assert not list((tmp_path / "data").rglob("import-*.zip"))              # the archive was not kept
