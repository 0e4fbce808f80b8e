import io
import json
import os
import re
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import (clone_version, coloured_image, form_token, login, png_bytes, synthetic_entries,
                            write_zip)
from web.db import TrainingJob, db
from web.jobs import DIED


# A softmax head with 1000 epochs: a job that runs until it is stopped.
LONG_FORM = {"dataset": "colours", "backbone": "vgg16-imagenet", "head": "softmax", "folds": 2, "weights": "none",
             "image_size": 32, "epochs": 1000, "fine_tune_epochs": 0}


def zip_bytes(tmp_path, entries):
    return write_zip(tmp_path / "upload.zip", entries).read_bytes()


def upload(client, data, name="colours", fallback="whole"):
    return client.post("/admin/datasets", content_type="multipart/form-data", data={
        "name": name, "face_fallback": fallback, "archive": (io.BytesIO(data), "upload.zip"),
        "csrf_token": form_token(client, "/admin/datasets")})


def post(client, path, page, **data):
    return client.post(path, data=dict(data, csrf_token=form_token(client, page)))


@pytest.fixture
def admin(client, tokens):
    return login(client, "ada")


def test_import_shows_counts_samples_and_rejections_escaped(admin, tmp_path):
    entries = synthetic_entries(per_class=6) | {"<script>alert(1)</script>/a.png": b"x",
                                                 "alpha/<b>bold</b>.txt": b"not a photo"}
    response = upload(admin, zip_bytes(tmp_path, entries))
    assert response.status_code == 302 and response.headers["Location"] == "/admin/datasets/colours"
    page = admin.get("/admin/datasets/colours").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "alpha/&lt;b&gt;bold&lt;/b&gt;.txt" in page
    assert page.count('src="/admin/datasets/colours/images/') == 18
    thumbnail = admin.get("/admin/datasets/colours/images/0")
    assert thumbnail.status_code == 200 and thumbnail.mimetype == "image/png"
    assert admin.get("/admin/datasets/colours/images/99").status_code == 404
    assert "colours" in admin.get("/admin/datasets").get_data(as_text=True)


def test_a_refused_import_shows_the_reason_and_keeps_nothing(admin, tmp_path, app):
    response = upload(admin, zip_bytes(tmp_path, synthetic_entries(per_class=3)))
    assert response.status_code == 400 and "at least 5 usable photos" in response.get_data(as_text=True)
    assert upload(admin, b"not a zip").status_code == 400
    assert upload(admin, zip_bytes(tmp_path, synthetic_entries(per_class=5)), name="../evil").status_code == 400
    leftovers = [p for p in (tmp_path / "data" / "uploads").rglob("*") if p.is_file()]
    assert leftovers == []


def test_delete_removes_the_dataset(admin, tmp_path):
    upload(admin, zip_bytes(tmp_path, synthetic_entries(per_class=5)))
    response = post(admin, "/admin/datasets/colours/delete", "/admin/datasets/colours")
    assert response.status_code == 302
    assert admin.get("/admin/datasets/colours").status_code == 404
    assert not (tmp_path / "data" / "uploads" / "datasets" / "colours").exists()


def test_training_page_starts_a_job_and_refuses_a_second(admin, tmp_path, app):
    upload(admin, zip_bytes(tmp_path, synthetic_entries(per_class=6)))
    form = dict(LONG_FORM)
    response = post(admin, "/admin/training", "/admin/training", **form)
    assert response.status_code == 302
    job_id = int(response.headers["Location"].rsplit("/", 1)[1])
    second = post(admin, "/admin/training", "/admin/training", **form)
    assert second.status_code == 409 and "one training job runs at a time" in second.get_data(as_text=True)
    page = admin.get(f"/admin/training/{job_id}").get_data(as_text=True)
    assert 'id="loss-chart"' in page and "Cancel" in page
    assert post(admin, f"/admin/training/{job_id}/cancel", f"/admin/training/{job_id}").status_code == 302
    deadline = time.monotonic() + 120
    while admin.get(f"/admin/training/{job_id}.json").get_json()["status"] not in ("cancelled", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert admin.get(f"/admin/training/{job_id}.json").get_json()["status"] == "cancelled"
    jobs = admin.get("/admin/training").get_data(as_text=True)
    assert "cancelled" in jobs
    audit = admin.get("/admin/audit").get_data(as_text=True)
    assert "training.start" in audit and "training.cancel" in audit and "dataset.import" in audit


def test_bad_training_options_are_refused(admin, tmp_path):
    upload(admin, zip_bytes(tmp_path, synthetic_entries(per_class=5)))
    response = post(admin, "/admin/training", "/admin/training", **dict(LONG_FORM, image_size=8))
    page = response.get_data(as_text=True)
    assert response.status_code == 400 and "image_size must be a whole number from 32 to 512" in page
    unavailable = post(admin, "/admin/training", "/admin/training", **dict(LONG_FORM, backbone="vggface",
                                                                          weights="pretrained"))
    page = unavailable.get_data(as_text=True)
    assert unavailable.status_code == 400 and "vggface is unavailable: VGG-Face weights not present" in page


def test_killing_the_training_process_fails_the_job_and_frees_the_slot(admin, tmp_path, app):
    upload(admin, zip_bytes(tmp_path, synthetic_entries(per_class=6)))
    form = dict(LONG_FORM)
    job_id = int(post(admin, "/admin/training", "/admin/training", **form).headers["Location"].rsplit("/", 1)[1])
    deadline = time.monotonic() + 120
    while "fold_epoch" not in admin.get(f"/admin/training/{job_id}.json").get_json()["progress"]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    with app.app_context():
        pid = db.session.get(TrainingJob, job_id).pid
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while (job := admin.get(f"/admin/training/{job_id}.json").get_json())["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert job["status"] == "failed" and job["error"] == DIED
    models = tmp_path / "data" / "models"
    assert [p.name for p in models.iterdir() if not p.name.startswith(".active")] == []
    form.update(epochs=1, head="linear")
    assert post(admin, "/admin/training", "/admin/training", **form).status_code == 302


@pytest.mark.parametrize("status", ["queued", "running"])
def test_a_job_left_behind_by_a_restart_is_marked_failed(app, admin, status):
    with app.app_context():
        job = TrainingJob(dataset="colours", options_json="{}", status=status, pid=2 ** 22 + 12345)
        db.session.add(job)
        db.session.commit()
        job_id = job.id
    body = admin.get(f"/admin/training/{job_id}.json").get_json()
    assert body["status"] == "failed" and body["error"] == DIED


def test_models_pages_activate_and_roll_back(admin, app, active_model):
    from web import get_registry
    with app.app_context():
        newer = clone_version(get_registry(), active_model)
    page = admin.get("/admin/models").get_data(as_text=True)
    assert active_model in page and newer in page
    detail = admin.get(f"/admin/models/{newer}").get_data(as_text=True)
    assert 'id="confusion"' in detail and "Random backbone weights" in detail
    assert "baseline: HOG + linear SVM" in detail and "3-fold stratified cross-validation" in detail
    assert re.search(r"at most \d+ MiB\s+of memory", detail)
    compare = admin.get(f"/admin/models/compare?v={newer}&v={active_model}").get_data(as_text=True)
    assert compare.count("vgg16-imagenet (random)") == 2 and "Recall: gamma" in compare
    assert "Training memory (peak)" in compare
    pointer = Path(app.config["MODELS_DIR"]) / "active.json"
    assert post(admin, f"/admin/models/{newer}/activate", f"/admin/models/{newer}").status_code == 302
    assert json.loads(pointer.read_text())["version"] == newer
    assert post(admin, "/admin/models/rollback", "/admin/models").status_code == 302
    assert json.loads(pointer.read_text())["version"] == active_model
    assert admin.get("/admin/models/20990101-000000-abcdef").status_code == 404
    assert post(admin, "/admin/models/nonsense/activate", "/admin/models").status_code == 404


def test_every_admin_and_api_route_refuses_doctors_and_anonymous_users(app, tokens):
    rules = [r for r in app.url_map.iter_rules() if r.rule.startswith(("/admin", "/api"))
             and r.endpoint != "api.health"]
    assert len(rules) > 15
    anonymous, doctor = app.test_client(), login(app.test_client(), "dan")
    # Valid CSRF tokens, so that what refuses a request is the role check, not the CSRF check.
    anonymous_csrf, doctor_csrf = form_token(anonymous, "/login"), form_token(doctor, "/")
    doctor_token = {"Authorization": f"Bearer {tokens['doctor']}"}
    for rule in rules:
        path = rule.rule.replace("<int:", "<").replace("<name>", "x").replace("<version>", "x")
        path = path.replace("<job_id>", "1").replace("<index>", "0")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            if rule.rule.startswith("/admin"):
                response = anonymous.open(path, method=method, data={"csrf_token": anonymous_csrf})
                assert response.status_code == 302 and "/login" in response.headers["Location"], (method, path)
                response = doctor.open(path, method=method, data={"csrf_token": doctor_csrf})
                assert response.status_code == 403, (method, path)
            else:
                assert anonymous.open(path, method=method).status_code == 401, (method, path)
                if rule.endpoint != "api.predict":
                    assert doctor.open(path, method=method, headers=doctor_token).status_code == 403, (method, path)


def test_model_page_shows_calibration_and_takes_thresholds(admin, app, active_model):
    page = admin.get(f"/admin/models/{active_model}").get_data(as_text=True)
    assert "Expected calibration error" in page and 'id="reliability"' in page and "<rect" in page
    response = post(admin, f"/admin/models/{active_model}/thresholds", f"/admin/models/{active_model}",
                    min_probability="0.75", min_margin="0.2")
    assert response.status_code == 302
    from web import get_registry
    with app.app_context():
        assert get_registry().thresholds(active_model) == {"min_probability": 0.75, "min_margin": 0.2}
    assert "set by an administrator" in admin.get(f"/admin/models/{active_model}").get_data(as_text=True)
    bad = post(admin, f"/admin/models/{active_model}/thresholds", f"/admin/models/{active_model}",
               min_probability="2", min_margin="0.1")
    assert bad.status_code == 400


def test_a_confusion_matrix_cell_lists_the_photos_behind_it(admin, app, active_model, trained):
    _, version, dataset = trained
    rows = json.loads((version.path / "evaluation.json").read_text())
    truth = [r for r in rows if r["label"] == 1 and np.argmax(r["probabilities"]) == 1]
    # The app's copy of the model points at a dataset that is not in the app's folder: no photos shown.
    page = admin.get(f"/admin/models/{active_model}/predictions?true=1&predicted=1").get_data(as_text=True)
    assert "cannot be shown" in page and page.count('class="thumb"') == len(truth) > 0
    import shutil
    shutil.copytree(dataset.path, Path(app.config["UPLOAD_DIR"]) / "datasets" / dataset.id)
    page = admin.get(f"/admin/models/{active_model}/predictions?true=1&predicted=1").get_data(as_text=True)
    shown = sorted(int(i) for i in re.findall(r"/admin/datasets/colours/images/(\d+)", page))
    assert shown == sorted(r["image"] for r in truth)
    assert admin.get(f"/admin/models/{active_model}/predictions?true=9&predicted=0").status_code == 404
    assert admin.get(f"/admin/models/{active_model}/predictions").status_code == 400


def test_doctors_cannot_open_the_error_analysis(client, tokens, active_model):
    login(client, "dan")
    assert client.get(f"/admin/models/{active_model}/predictions?true=0&predicted=0").status_code == 403


def test_a_damaged_card_marks_only_its_version_broken_on_every_route(admin, app, runner, tokens, active_model):
    from web import get_registry
    with app.app_context():
        damaged = clone_version(get_registry(), active_model)
    (Path(app.config["MODELS_DIR"]) / damaged / "card.json").write_text("{not json")
    page = admin.get("/admin/models")
    assert page.status_code == 200 and active_model in page.get_data(as_text=True)
    assert re.search(rf"{damaged}.*damaged.*not valid JSON", page.get_data(as_text=True), re.S)
    listed = admin.get("/api/v1/models", headers={"Authorization": f"Bearer {tokens['admin']}"}).get_json()
    assert [m["version"] for m in listed["models"]] == [active_model]
    assert listed["broken"] == [{"version": damaged, "active": False, "broken": "card.json is not valid JSON"}]
    refused = admin.post(f"/api/v1/models/{damaged}/activate", headers={"Authorization": f"Bearer {tokens['admin']}"})
    assert refused.status_code == 409 and "damaged" in refused.get_json()["message"]
    assert admin.get(f"/admin/models/{damaged}").status_code == 409
    result = runner.invoke(args=["models", "list"])
    assert result.exit_code == 0 and f"{damaged}\tDAMAGED: card.json is not valid JSON" in result.output


def test_a_damaged_active_card_gives_one_state_on_every_route(admin, app, tokens, active_model):
    doctor = {"Authorization": f"Bearer {tokens['doctor']}"}
    assert admin.get("/api/v1/health").get_json()["model_version"] == active_model
    (Path(app.config["MODELS_DIR"]) / active_model / "card.json").write_text("[]")
    # The model in memory was whole when it loaded: every route goes on serving it.
    assert admin.get("/api/v1/health").get_json()["model_version"] == active_model
    assert active_model in admin.get("/").get_data(as_text=True)
    # After a restart nothing can load it: every route says so, and none shows a server path.
    app.extensions.pop("facedx.predictor")
    health, page = admin.get("/api/v1/health"), admin.get("/")
    photo = png_bytes(coloured_image("alpha", seed=1))
    predicted = admin.post("/api/v1/predict", headers=doctor, data={"image": (io.BytesIO(photo), "a.png")})
    assert (health.status_code, predicted.status_code) == (503, 503)
    assert "damaged" in predicted.get_json()["message"] and "damaged" in page.get_data(as_text=True)
    for response in (health, page, predicted):
        assert app.config["MODELS_DIR"] not in response.get_data(as_text=True)


@pytest.mark.parametrize("damage", ["{not json", "[]", '{"version": "x", "history": "abc"}'])
def test_a_damaged_pointer_is_repaired_by_activating_a_version(admin, app, runner, active_model, damage):
    pointer = Path(app.config["MODELS_DIR"]) / "active.json"
    pointer.write_text(damage)
    page = admin.get("/")
    assert "damaged" in page.get_data(as_text=True) and app.config["MODELS_DIR"] not in page.get_data(as_text=True)
    assert admin.get("/api/v1/health").status_code == 503
    listed = runner.invoke(args=["models", "list"])
    assert listed.exit_code == 0 and "damaged" in listed.output and active_model in listed.output
    assert "damaged" in admin.get("/admin/models").get_data(as_text=True)
    assert post(admin, f"/admin/models/{active_model}/activate", "/admin/models").status_code == 302
    assert json.loads(pointer.read_text())["version"] == active_model
    assert admin.get("/api/v1/health").get_json()["model_version"] == active_model
