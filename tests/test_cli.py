import json
import os
from pathlib import Path

import pytest

from ml.features import vgg
from tests.helpers import audit_log, coloured_face, png_bytes, synthetic_entries, write_zip


def run(runner, *args):
    return runner.invoke(args=list(args), catch_exceptions=False)


def test_import_train_activate_predict(runner, tmp_path):
    archive = write_zip(tmp_path / "c.zip", synthetic_entries(per_class=6) | {"alpha/readme.txt": b"text"})
    result = run(runner, "dataset", "import", str(archive), "--name", "colours",
                 "--face-detector", "haar", "--face-fallback", "whole")
    assert result.exit_code == 0, result.output
    assert "18 photos in 3 classes" in result.output and "alpha/readme.txt: The file is not an image" in result.output
    assert "colours\t18 photos" in run(runner, "dataset", "list").output

    result = run(runner, "train", "--dataset", "colours", "--backbone", "vgg16-imagenet", "--weights", "none",
                 "--image-size", "32", "--folds", "3", "--head", "softmax", "--epochs", "20")
    assert result.exit_code == 0, result.output
    assert "cross-validation: fold 3 of 3" in result.output and "training the head: epoch 1 of 20" in result.output
    assert "3-fold stratified cross-validation" in result.output
    assert "baseline majority" in result.output and "baseline hog-svm" in result.output
    version = result.output.split("Version ", 1)[1].split()[0]

    listed = run(runner, "models", "list").output
    assert version in listed and not listed.startswith("*")
    assert run(runner, "models", "activate", version).exit_code == 0
    assert run(runner, "models", "list").output.startswith(f"* {version}")

    photo = tmp_path / "photo.png"
    photo.write_bytes(png_bytes(coloured_face("alpha", seed=4)))
    result = run(runner, "predict", str(photo))
    assert result.exit_code == 0, result.output
    body = json.loads(result.output[result.output.index("{"):])
    assert body["model_version"] == version
    assert sum(p["probability"] for p in body["predictions"]) == pytest.approx(1.0, abs=1e-5)
    assert {p["label"] for p in body["predictions"]} == {"alpha", "beta", "gamma"}


def test_train_runs_as_a_job_that_holds_the_one_training_place_and_is_audited(app, runner, tmp_path, tokens,
                                                                             monkeypatch):
    import web.cli
    from tests.helpers import SMALL_API_OPTIONS, bearer_headers
    from web.cli import cli_actor
    from web.db import db
    from web.records import Job

    archive = write_zip(tmp_path / "c.zip", synthetic_entries(per_class=5))
    run(runner, "dataset", "import", str(archive), "--name", "c", "--face-detector", "haar", "--face-fallback", "whole")
    refusals, shown = [], []

    def progress_and_a_web_start(progress):       # while `flask train` runs, the web may not start a training
        shown.append(progress)
        if not refusals:
            refusals.append(app.test_client().post("/api/v1/training-jobs", headers=bearer_headers(tokens["admin"]),
                                                   json={"dataset": "c", "options": SMALL_API_OPTIONS}))
    monkeypatch.setattr(web.training.cli, "print_progress", progress_and_a_web_start)
    result = run(runner, "train", "--dataset", "c", "--backbone", "hog", "--folds", "2")
    assert result.exit_code == 0, result.output
    assert refusals[0].status_code == 409 and "one training job runs at a time" in refusals[0].get_json()["message"]
    assert shown[-1].fraction == 1.0
    with app.app_context():
        job = db.session.execute(db.select(Job)).scalar_one()
        assert (job.kind, job.status, job.created_by) == ("training", "succeeded", cli_actor())
        assert result.output.split("Version ", 1)[1].split()[0] == job.model_version
        job_id, version = job.id, job.model_version
        job.status = "running"                    # as if that run were still going on, beating
        db.session.commit()
    second = run(runner, "train", "--dataset", "c", "--backbone", "hog", "--folds", "2")
    assert second.exit_code == 1 and f"Training job {job_id} is still running; one training job runs at a time" in \
        second.output
    assert run(runner, "models", "activate", version, "--force").exit_code == 0
    actor = cli_actor()
    assert audit_log(app) == [(actor, "dataset.import", "c"), (actor, "training.start", f"job {job_id} on c"),
                              (actor, "model.activate", f"{version} (forced: flagged as not useful)")]


def test_imagenet_without_network_fails_fast_naming_the_file(runner, tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -2] Name or service not known")
    monkeypatch.setattr(vgg.keras.utils, "get_file", no_network)
    archive = write_zip(tmp_path / "c.zip", synthetic_entries(per_class=5))
    run(runner, "dataset", "import", str(archive), "--name", "c", "--face-detector", "haar",
        "--face-fallback", "whole")
    result = run(runner, "train", "--dataset", "c", "--backbone", "vgg16-imagenet", "--weights", "imagenet")
    assert result.exit_code == 1
    assert vgg.VGG16_NOTOP_FILE in result.output and "models/pretrained" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args, message", [
    (["train", "--dataset", "absent", "--weights", "none"], "no dataset named 'absent'"),
    (["train", "--dataset", "x", "--image-size", "7"], "image_size must be a whole number from 32 to 512"),
    (["train", "--dataset", "x", "--backbone", "resnet"], 'Unknown backbone "resnet"'),
    (["train", "--dataset", "x", "--folds", "1"], "folds must be a whole number from 2 to 20"),
    (["train", "--dataset", "x", "--epochs", "zero"], 'epochs must be a whole number from 1 to 1000 (got "zero")'),
    (["models", "activate", "../../etc"], "no complete model version"),
    (["models", "rollback"], "no earlier active version"),
    (["dataset", "import", "/nonexistent.zip", "--name", "x"], "does not exist"),
    (["dataset", "delete", "absent"], "no dataset named"),
])
def test_bad_arguments_end_with_a_message_not_a_traceback(runner, args, message):
    result = run(runner, *args)
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output


def test_predict_without_an_active_model_or_with_a_bad_file(runner, tmp_path):
    photo = tmp_path / "photo.png"
    photo.write_bytes(png_bytes(coloured_face("alpha", seed=4)))
    result = run(runner, "predict", str(photo))
    assert result.exit_code == 1 and "No model is active" in result.output


@pytest.mark.parametrize("command", [["user", "--help"], ["setup"], ["--help"]])
def test_commands_that_need_no_model_start_without_tensorflow(tmp_path, command):
    import subprocess
    import sys

    script = ("import sys\nfrom flask.cli import FlaskGroup\nfrom app import create_app\n"
              "try:\n    FlaskGroup(create_app=create_app).main(sys.argv[1:], prog_name='flask')\n"
              "except SystemExit as done:\n    assert not done.code, done.code\n"
              "print('TENSORFLOW' if 'tensorflow' in sys.modules or 'keras' in sys.modules else 'NO-TENSORFLOW')\n")
    env = dict(os.environ, FACEDX_DATA_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", script, *command], capture_output=True, text=True, env=env,
                          timeout=300, cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "NO-TENSORFLOW"


def test_the_demo_builds_trains_and_activates_a_model_that_says_it_is_a_demo(app, runner):
    from ml.datasets.demo import DEMO_DATASET, PEOPLE

    result = run(runner, "demo", "--per-person", "6", "--backbone", "hog")
    assert result.exit_code == 0, result.output
    assert "NOT a clinical model" in result.output and "not a clinical model" in result.output.splitlines()[-1]
    assert f"{DEMO_DATASET}: {PEOPLE[0]} 6, {PEOPLE[1]} 6" in result.output   # every varied photo has its face
    version = result.output.split("Version ", 1)[1].split()[0]
    assert run(runner, "models", "list").output.startswith(f"* {version}")
    assert ("cli:", "model.activate", version) in [(who[:4], action, target) for who, action, target in audit_log(app)]
    with app.app_context():
        from web.db import db
        from web.records import IntendedUse
        assert "not a clinical model" in db.session.get(IntendedUse, version).text
    tried = result.output.split("upload ", 1)[1].split()[0]           # a photo of the first person, not in the set
    body = json.loads((predicted := run(runner, "predict", tried)).output[predicted.output.index("{"):])
    assert body["model_version"] == version and body["predictions"][0]["label"] == PEOPLE[0]
    again = run(runner, "demo", "--per-person", "6", "--backbone", "hog")
    assert again.exit_code == 0 and "is already here; it is used again" in again.output
