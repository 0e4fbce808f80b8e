"""Start-up removes what interrupted imports, uploads and trainings left behind, and nothing else."""
import logging
import os
import time
from datetime import timedelta

from ml.cleanup import remove_stale

DAY = 24 * 3600
# What a killed import, upload, training, deletion or activation leaves in the data folder.
LEFTOVERS = ["uploads/tmp/tmpa1b2c3.zip", "uploads/datasets/.import-utk-0123abcd/0/00001.png",
             "uploads/datasets/.delete-old-4567ef/dataset.json",
             "uploads/datasets/utk/features/hog-1/0a1b.tmp.npy",
             "models/.tmp-20250101-000000-abcdef/backbone.keras", "models/.active.json.89ab",
             "models/20250101-000000-abcdef/.abstention.json.cdef"]
# What is in use: a dataset with its cached features, a version, the active pointer, the secret key.
KEPT = ["uploads/datasets/utk/dataset.json", "uploads/datasets/utk/features/hog-1/0a1b.npy",
        "models/20250101-000000-abcdef/card.json", "models/20250101-000000-abcdef/abstention.json",
        "models/active.json", "instance/secret_key"]


def make_files(root, names, age):
    """Create files (and their folders) last changed `age` seconds ago."""
    moment = time.time() - age
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        for changed in [path, *path.relative_to(root).parents]:
            os.utime(root / changed, (moment, moment))


def files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_old_leftovers_are_removed_and_logged_and_everything_in_use_is_kept(tmp_path, caplog):
    make_files(tmp_path, LEFTOVERS + KEPT, 3 * DAY)
    with caplog.at_level(logging.WARNING, logger="ml.cleanup"):
        removed = remove_stale(tmp_path, 2 * DAY)
    assert files(tmp_path) == sorted(KEPT)
    tops = ["uploads/tmp/tmpa1b2c3.zip", "uploads/datasets/.import-utk-0123abcd", "uploads/datasets/.delete-old-4567ef",
            "uploads/datasets/utk/features/hog-1/0a1b.tmp.npy", "models/.tmp-20250101-000000-abcdef",
            "models/.active.json.89ab", "models/20250101-000000-abcdef/.abstention.json.cdef"]
    assert sorted(str(p.relative_to(tmp_path)) for p in removed) == sorted(tops)
    assert all(any(top in message for message in caplog.messages) for top in tops)


def test_a_leftover_still_being_written_is_kept(tmp_path):
    make_files(tmp_path, LEFTOVERS, 3 * DAY)
    make_files(tmp_path, ["uploads/datasets/.import-utk-0123abcd/1/00007.png"], 60)   # the import goes on
    make_files(tmp_path, ["models/.active.json.fresh"], 0)
    remove_stale(tmp_path, 2 * DAY)
    assert files(tmp_path) == ["models/.active.json.fresh", "uploads/datasets/.import-utk-0123abcd/0/00001.png",
                               "uploads/datasets/.import-utk-0123abcd/1/00007.png"]


def test_a_missing_data_folder_has_nothing_to_remove(tmp_path):
    assert remove_stale(tmp_path / "absent", 0) == []


def test_setup_removes_the_leftovers_of_a_killed_import_and_says_so(app, tmp_path):
    data = tmp_path / "data"
    make_files(data, ["uploads/tmp/tmpa1b2c3.zip", "uploads/datasets/.import-utk-0123abcd/0/00001.png"], 3 * DAY)
    make_files(data, ["uploads/tmp/tmpnow.zip"], 0)                      # an upload arriving right now
    result = app.test_cli_runner().invoke(args=["setup"])
    assert result.exit_code == 0, result.output
    assert files(data / "uploads") == ["tmp/tmpnow.zip"]
    assert not (data / "uploads" / "datasets" / ".import-utk-0123abcd").exists()
    assert "Removed " in result.output and ".import-utk-0123abcd, left behind by an interrupted" in result.output


def test_a_training_worker_removes_the_leftovers_of_a_killed_training_when_it_starts(app, tmp_path, redis_url,
                                                                                      monkeypatch):
    from rq import Worker

    from app import create_app

    data = tmp_path / "data"
    make_files(data, ["models/.tmp-20250101-000000-abcdef/backbone.keras"], 3 * DAY)
    queued = create_app({"TESTING": True, "REDIS_URL": redis_url})      # the dispatcher is chosen at creation
    monkeypatch.setattr(Worker, "work", lambda worker: None)            # take no job: just start
    result = queued.test_cli_runner().invoke(args=["worker"])
    assert result.exit_code == 0, result.output
    assert not (data / "models" / ".tmp-20250101-000000-abcdef").exists()


def test_at_start_up_what_no_live_job_owns_goes_at_once_and_what_one_owns_stays(tmp_path):
    from ml.cleanup import GRACE_S, LiveJobs

    make_files(tmp_path, LEFTOVERS + KEPT, GRACE_S + 60)          # a kill -9 two minutes ago, not two days
    make_files(tmp_path, ["uploads/tmp/import-arriving.zip"], 0)   # an upload being written right now
    remove_stale(tmp_path, 2 * DAY, LiveJobs())
    assert files(tmp_path) == sorted(KEPT + ["uploads/tmp/import-arriving.zip"])

    make_files(tmp_path, LEFTOVERS, GRACE_S + 60)
    live = LiveJobs(archives={"tmpa1b2c3.zip"}, datasets={"utk"}, any=True)    # an import still running
    remove_stale(tmp_path, 2 * DAY, live)
    assert files(tmp_path) == sorted(KEPT + ["uploads/tmp/import-arriving.zip", "uploads/tmp/tmpa1b2c3.zip",
                                             "uploads/datasets/.import-utk-0123abcd/0/00001.png",
                                             "uploads/datasets/utk/features/hog-1/0a1b.tmp.npy",
                                             "models/.tmp-20250101-000000-abcdef/backbone.keras"])


def test_setup_keeps_what_a_running_import_owns_and_removes_a_killed_ones_at_once(app, tmp_path):
    import json

    from web.db import db
    from web.records import Job, utcnow

    data = tmp_path / "data"
    with app.app_context():
        db.session.add(Job(kind="import", dataset="live", status="running", options_json=json.dumps(
            {"upload": "import-live.zip"}), created_by="ada", heartbeat_at=utcnow(), started_at=utcnow()))
        db.session.add(Job(kind="import", dataset="killed", status="running", options_json=json.dumps(
            {"upload": "import-killed.zip"}), created_by="ada", heartbeat_at=utcnow() - timedelta(hours=1),
            started_at=utcnow() - timedelta(hours=1)))
        db.session.commit()
    make_files(data, ["uploads/tmp/import-live.zip", "uploads/datasets/.import-live-0123abcd/0/00001.png",
                      "uploads/tmp/import-killed.zip", "uploads/datasets/.import-killed-4567abcd/0/00001.png"], 300)
    result = app.test_cli_runner().invoke(args=["setup"])
    assert result.exit_code == 0, result.output
    assert files(data / "uploads") == ["datasets/.import-live-0123abcd/0/00001.png", "tmp/import-live.zip"]
