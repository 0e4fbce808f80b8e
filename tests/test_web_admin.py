import io
import json
import os
import re
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import (clone_version, coloured_face, face_haar_misses, form_token, import_here, login, png_bytes,
                           synthetic_entries, write_zip)
from web.db import db
from web.jobs.records import DIED, reconcile
from web.records import Job

# A softmax head with 1000 epochs: a job that runs until it is stopped.
LONG_FORM = {"dataset": "colours", "backbone": "vgg16-imagenet", "head": "softmax", "folds": 2, "weights": "none",
             "image_size": 32, "epochs": 1000, "fine_tune_epochs": 0}


def zip_bytes(tmp_path, entries):
    return write_zip(tmp_path / "upload.zip", entries).read_bytes()


def upload(client, data, name="colours", fallback="whole", filename="upload.zip"):
    return client.post("/admin/datasets", content_type="multipart/form-data", data={
        "name": name, "face_fallback": fallback, "archive": (io.BytesIO(data), filename),
        "csrf_token": form_token(client, "/admin/datasets")})


def import_ended(client, response, timeout=120):
    """Follow an accepted upload to its import page; poll the import until it ends; return its last state."""
    assert response.status_code == 302 and response.headers["Location"].startswith("/admin/imports/")
    deadline = time.monotonic() + timeout
    while (state := client.get(response.headers["Location"] + ".json").get_json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, state
        time.sleep(0.1)
    return state


def imported(client, data, **fields):
    """Import an archive through the page and wait for it; return the import's final state."""
    return import_ended(client, upload(client, data, **fields))


def post(client, path, page, **data):
    return client.post(path, data=dict(data, csrf_token=form_token(client, page)))


@pytest.fixture
def admin(app, client, tokens):
    app.config["FACE_DETECTOR"] = "haar"         # the generated photos hold no face: the fast detector will do
    return login(client, "ada")


def test_import_shows_counts_samples_and_rejections_escaped(admin, tmp_path):
    entries = synthetic_entries(per_class=6) | {"<script>alert(1)</script>/a.png": b"x",
                                                 "alpha/<b>bold</b>.txt": b"not a photo"}
    response = upload(admin, zip_bytes(tmp_path, entries), filename="Clinic photos 2026.zip")
    assert import_ended(admin, response)["status"] == "succeeded"
    done = admin.get(response.headers["Location"])
    assert done.status_code == 302 and done.headers["Location"] == "/admin/datasets/colours"
    page = admin.get("/admin/datasets/colours").get_data(as_text=True)
    assert "Imported 18 photos into colours from Clinic photos 2026.zip." in page
    assert "from Clinic photos 2026.zip;" in page
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "alpha/&lt;b&gt;bold&lt;/b&gt;.txt" in page
    assert page.count('src="/admin/datasets/colours/images/') == 18
    thumbnail = admin.get("/admin/datasets/colours/images/0")
    assert thumbnail.status_code == 200 and thumbnail.mimetype == "image/png"
    assert admin.get("/admin/datasets/colours/images/99").status_code == 404
    assert "colours" in admin.get("/admin/datasets").get_data(as_text=True)


def test_a_refused_import_shows_the_reason_and_keeps_nothing(admin, tmp_path, app):
    response = upload(admin, zip_bytes(tmp_path, synthetic_entries(per_class=3)))
    state = import_ended(admin, response)
    assert state["status"] == "failed" and "at least 5 usable photos" in state["error"]
    assert "at least 5 usable photos" in admin.get(response.headers["Location"]).get_data(as_text=True)
    assert upload(admin, b"not a zip").status_code == 400
    assert upload(admin, zip_bytes(tmp_path, synthetic_entries(per_class=5)), name="../evil").status_code == 400
    leftovers = [p for p in (tmp_path / "data" / "uploads").rglob("*") if p.is_file()]
    assert leftovers == []


def test_delete_removes_the_dataset(admin, app, tmp_path):
    import_here(app, "colours", per_class=5)
    response = post(admin, "/admin/datasets/colours/delete", "/admin/datasets/colours")
    assert response.status_code == 302
    assert admin.get("/admin/datasets/colours").status_code == 404
    assert not (tmp_path / "data" / "uploads" / "datasets" / "colours").exists()


def test_training_page_starts_a_job_and_refuses_a_second(admin, tmp_path, app):
    imported(admin, zip_bytes(tmp_path, synthetic_entries(per_class=6)))
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


def test_bad_training_options_are_refused(admin, app):
    import_here(app, "colours", per_class=5)
    response = post(admin, "/admin/training", "/admin/training", **dict(LONG_FORM, image_size=8))
    page = response.get_data(as_text=True)
    assert response.status_code == 400 and "image_size must be a whole number from 32 to 512" in page
    unavailable = post(admin, "/admin/training", "/admin/training", **dict(LONG_FORM, backbone="vggface",
                                                                          weights="pretrained"))
    page = unavailable.get_data(as_text=True)
    assert unavailable.status_code == 400 and "vggface is unavailable: VGG-Face weights not present" in page


def test_killing_the_training_process_fails_the_job_and_frees_the_slot(admin, tmp_path, app):
    import_here(app, "colours", per_class=6)
    form = dict(LONG_FORM)
    job_id = int(post(admin, "/admin/training", "/admin/training", **form).headers["Location"].rsplit("/", 1)[1])
    deadline = time.monotonic() + 120
    while "fold_epoch" not in admin.get(f"/admin/training/{job_id}.json").get_json()["progress"]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    with app.app_context():
        pid = db.session.get(Job, job_id).pid
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
        job = Job(dataset="colours", options_json="{}", status=status, pid=2 ** 22 + 12345)
        db.session.add(job)
        db.session.commit()
        job_id = job.id
    body = admin.get(f"/admin/training/{job_id}.json").get_json()
    assert body["status"] == "failed" and body["error"] == DIED
    with app.app_context():
        assert db.session.get(Job, job_id).status == status       # reading wrote nothing
        reconcile()
        assert db.session.get(Job, job_id).error == DIED          # what runs before a start records it


def small_faces(per_class):
    """Return zip entries of small photos of one tinted face per class (48 px, quick to import), each unique."""
    entries = {}
    for label in ("alpha", "beta"):
        face = coloured_face(label, seed=0, size=48)
        for i in range(per_class):
            image = face.copy()
            image[0, 0] = (i % 256, i // 256, 0)
            entries[f"{label}/{i}.png"] = png_bytes(image)
    return entries


def test_an_import_of_2000_photos_answers_at_once_and_shows_photo_n_of_n(admin, tmp_path):
    entries = small_faces(1000)
    response = upload(admin, zip_bytes(tmp_path, entries), filename="two thousand.zip")
    first = admin.get(response.headers["Location"] + ".json").get_json()
    assert first["status"] in ("queued", "running") and first["progress"].get("done", 0) < 2000
    page = admin.get(response.headers["Location"]).get_data(as_text=True)
    assert "Importing colours from two thousand.zip" in page and "Cancel the import" in page
    deadline = time.monotonic() + 120
    while (state := admin.get(response.headers["Location"] + ".json").get_json())["status"] == "queued" or \
            not state["progress"].get("rate"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    if state["status"] == "running":
        assert re.fullmatch(r"importing photos: photo [\d,]+ of 2,000 · [\d.]+ photos a second · "
                            r"about \d+ (s|min) left", state["summary"]), state["summary"]
    state = import_ended(admin, response)
    assert state["status"] == "succeeded" and state["progress"]["fraction"] == 1.0
    assert state["summary"].startswith("importing photos: photo 2,000 of 2,000") and state["result"]["images"] == 2000


def test_a_cancelled_import_keeps_nothing(admin, tmp_path, app):
    entries = small_faces(1000)
    response = upload(admin, zip_bytes(tmp_path, entries))
    job_page = response.headers["Location"]
    deadline = time.monotonic() + 60
    while not admin.get(job_page + ".json").get_json()["progress"].get("done"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert post(admin, job_page + "/cancel", job_page).status_code == 302
    assert import_ended(admin, response)["status"] == "cancelled"
    assert "nothing of it was kept" in admin.get(job_page).get_data(as_text=True)
    assert [p for p in (tmp_path / "data" / "uploads").rglob("*") if p.is_file()] == []
    assert post(admin, job_page + "/cancel", job_page).status_code == 409


def test_rejected_photos_show_thumbnails_and_those_without_a_face_can_be_added_whole(admin, app, tmp_path,
                                                                                    face_photos):
    from tests.helpers import face_variants

    app.config["FACE_DETECTOR"] = "haar"
    entries = {f"first/{i}.jpg": d for i, d in enumerate(face_variants(face_photos["astronaut"], 5))}
    entries |= {f"second/{i}.jpg": d for i, d in enumerate(face_variants(face_photos["grace_hopper"], 5))}
    entries |= {"first/no-face.png": png_bytes(face_haar_misses("alpha")),      # used whole, a face
                "second/notes.txt": b"not a photo", "second/a copy.jpg": entries["second/0.jpg"]}
    assert imported(admin, zip_bytes(tmp_path, entries), name="faces", fallback="none")["status"] == "succeeded"
    page = admin.get("/admin/datasets/faces").get_data(as_text=True)
    duplicates = page[page.index('id="duplicates"'):]
    assert duplicates.index("second/0.jpg") < duplicates.index("second/a copy.jpg")      # kept, then left out
    thumbnails = re.findall(r'src="(/admin/datasets/faces/rejected/\d+)"', page)
    assert len(thumbnails) == 1 and admin.get(thumbnails[0]).mimetype == "image/png"
    assert admin.get("/admin/datasets/faces/rejected/99").status_code == 404
    assert "Add 1 photo using the whole photo" in page
    response = post(admin, "/admin/datasets/faces/retry-whole", "/admin/datasets/faces")
    assert response.status_code == 302
    page = admin.get("/admin/datasets/faces").get_data(as_text=True)
    assert "Added 1 photos of faces, each used whole." in page and "using the whole photo" not in page
    assert re.search(r"<td>first</td><td class=\"number\">6</td>", page)
    with app.app_context():
        from web.records import AuditEvent
        actions = [e.action for e in db.session.query(AuditEvent)]
    assert actions == ["dataset.import", "dataset.retry_whole"]


def test_models_pages_activate_and_roll_back(admin, app, active_model):
    from web.services import get_registry
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
    from web.api import FOR_DOCTORS

    rules = [r for r in app.url_map.iter_rules() if r.rule.startswith(("/admin", "/api"))
             and r.endpoint != "api.health"]
    assert len(rules) > 15
    anonymous, doctor = app.test_client(), login(app.test_client(), "dan")
    # Valid CSRF tokens, so that what refuses a request is the role check, not the CSRF check.
    anonymous_csrf, doctor_csrf = form_token(anonymous, "/login"), form_token(doctor, "/")
    doctor_token = {"Authorization": f"Bearer {tokens['doctor']}"}
    for rule in rules:
        path = rule.rule.replace("<int:", "<").replace("<name>", "x").replace("<version>", "x")
        path = path.replace("<job_id>", "1").replace("<index>", "0").replace("<case>", "0")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            if rule.rule.startswith("/admin"):
                response = anonymous.open(path, method=method, data={"csrf_token": anonymous_csrf})
                assert response.status_code == 302 and "/login" in response.headers["Location"], (method, path)
                response = doctor.open(path, method=method, data={"csrf_token": doctor_csrf})
                assert response.status_code == 403, (method, path)
            else:
                assert anonymous.open(path, method=method).status_code == 401, (method, path)
                if rule.endpoint not in FOR_DOCTORS:            # predicting
                    assert doctor.open(path, method=method, headers=doctor_token).status_code == 403, (method, path)


def test_model_page_shows_calibration_and_takes_thresholds(admin, app, active_model):
    page = admin.get(f"/admin/models/{active_model}").get_data(as_text=True)
    assert "Expected calibration error" in page and 'id="reliability"' in page and "<rect" in page
    response = post(admin, f"/admin/models/{active_model}/thresholds", f"/admin/models/{active_model}",
                    min_probability="0.75", min_margin="0.2")
    assert response.status_code == 302
    from web.services import get_registry
    with app.app_context():
        assert get_registry().thresholds(active_model) == {"min_probability": 0.75, "min_margin": 0.2}
    assert "set by an administrator" in admin.get(f"/admin/models/{active_model}").get_data(as_text=True)
    bad = post(admin, f"/admin/models/{active_model}/thresholds", f"/admin/models/{active_model}",
               min_probability="2", min_margin="0.1")
    assert bad.status_code == 400


def test_a_confusion_matrix_cell_lists_the_photos_behind_it(admin, app, active_model, trained):
    version, dataset = trained.version, trained.dataset
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
    from web.services import get_registry
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
    photo = png_bytes(coloured_face("alpha", seed=1))
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


def audit_actions(app):
    from web.records import AuditEvent
    with app.app_context():
        return [(e.action, e.target) for e in db.session.query(AuditEvent).order_by(AuditEvent.id)]


def test_curation_removes_and_moves_photos_each_change_an_audited_revision(admin, app):
    first = import_here(app, "colours")
    page = admin.get("/admin/datasets/colours/photos?class=1").get_data(as_text=True)
    assert page.count('class="photo"') == 6 and "beta (6 photos)" in page
    assert f"revision {first.checksum[:12]}" in page
    removed = post(admin, "/admin/datasets/colours/photos/6/remove", "/admin/datasets/colours/photos?class=1",
                   revision=first.checksum, **{"class": 1})
    assert removed.status_code == 302 and removed.headers["Location"].endswith("/photos?class=1&page=1")
    second = admin.get("/admin/datasets/colours").get_data(as_text=True)
    assert re.search(r"<td>beta</td><td class=\"number\">5</td>", second)
    from ml.datasets import get_dataset
    manifest = get_dataset(Path(app.config["UPLOAD_DIR"]) / "datasets", "colours").manifest
    assert manifest.previous == first.checksum and f"revision {manifest.checksum[:12]}" in second
    stale = post(admin, "/admin/datasets/colours/photos/0/move", "/admin/datasets/colours/photos",
                 revision=first.checksum, label="gamma")
    assert stale.status_code == 302
    assert "changed since this page was shown" in admin.get(stale.headers["Location"]).get_data(as_text=True)
    moved = post(admin, "/admin/datasets/colours/photos/0/move", "/admin/datasets/colours/photos",
                 revision=manifest.checksum, label="gamma")
    assert moved.status_code == 302
    page = admin.get("/admin/datasets/colours/photos?class=2").get_data(as_text=True)
    assert page.count('class="photo"') == 7 and "Moved photo 0 of colours from alpha to gamma" in page
    assert [a for a, _ in audit_actions(app)] == ["dataset.photo_remove", "dataset.photo_move"]
    assert admin.get("/admin/datasets/colours/photos?class=7").status_code == 404
    assert admin.get("/admin/datasets/colours/photos?page=0").status_code == 404
    bad = post(admin, "/admin/datasets/colours/photos/0/move", "/admin/datasets/colours/photos",
               revision="not a checksum", label="beta")
    assert bad.status_code == 302 and "changed since" in admin.get(bad.headers["Location"]).get_data(as_text=True)


def test_the_last_curation_change_is_undone_from_the_photos_page(admin, app):
    first = import_here(app, "colours")
    photos = "/admin/datasets/colours/photos?class=1"
    assert 'id="undo"' not in admin.get(photos).get_data(as_text=True)
    post(admin, "/admin/datasets/colours/photos/6/remove", photos, revision=first.checksum, **{"class": 1})
    page = admin.get(photos).get_data(as_text=True)
    assert page.count('class="photo"') == 5
    undo = re.search(r'<div class="undo-bar" id="undo".*?</div>', page, re.S).group(0)
    assert "Removed photo 6 from colours." in undo and 'action="/admin/datasets/colours/undo"' in undo
    revision = re.search(r'name="revision" value="([0-9a-f]{64})"', undo).group(1)
    stale = post(admin, "/admin/datasets/colours/undo", photos, revision=first.checksum, **{"class": 1})
    assert "changed since" in admin.get(stale.headers["Location"]).get_data(as_text=True)
    done = post(admin, "/admin/datasets/colours/undo", photos, revision=revision, **{"class": 1})
    assert done.status_code == 302 and done.headers["Location"].endswith("/photos?class=1&page=1")
    page = admin.get(photos).get_data(as_text=True)
    assert page.count('class="photo"') == 6 and 'id="undo"' not in page
    assert f"Undone (removed photo 6 from colours), back to the revision before it: revision {first.checksum[:12]}" \
        in page
    assert [a for a, _ in audit_actions(app)] == ["dataset.photo_remove", "dataset.undo"]


def test_what_a_removal_took_away_can_be_deleted_for_good_and_then_not_undone(admin, app):
    from web.services import datasets_root

    first = import_here(app, "colours")
    photos = "/admin/datasets/colours/photos?class=1"
    post(admin, "/admin/datasets/colours/photos/6/remove", photos, revision=first.checksum, **{"class": 1})
    with app.app_context():
        folder = Path(datasets_root()) / "colours"
    kept = [path for path in (folder / "revisions" / "undo").rglob("*") if path.is_file() and path.suffix == ".png"]
    assert len(kept) == 1                               # the removed photo, kept for an undo
    page = admin.get(photos).get_data(as_text=True)
    undo = re.search(r'<div class="undo-bar" id="undo".*?</div>', page, re.S).group(0)
    assert 'action="/admin/datasets/colours/undo/forget"' in undo and "data-confirm=" in undo
    revision = re.search(r'name="revision" value="([0-9a-f]{64})"', undo).group(1)
    stale = post(admin, "/admin/datasets/colours/undo/forget", photos, revision=first.checksum, **{"class": 1})
    assert "changed since" in admin.get(stale.headers["Location"]).get_data(as_text=True) and kept[0].exists()
    post(admin, "/admin/datasets/colours/undo/forget", photos, revision=revision, **{"class": 1})
    page = admin.get(photos).get_data(as_text=True)
    assert not kept[0].exists() and 'id="undo"' not in page and "Deleted for good" in page
    assert page.count('class="photo"') == 5
    refused = post(admin, "/admin/datasets/colours/undo", photos, revision=revision, **{"class": 1})
    assert "cannot be undone" in admin.get(refused.headers["Location"]).get_data(as_text=True)
    assert [a for a, _ in audit_actions(app)] == ["dataset.photo_remove", "dataset.forget_undo"]


def test_a_version_is_tried_on_a_photo_as_a_doctor_would_see_it_without_activating_it(admin, app, active_model):
    from web.services import get_predictor, get_registry
    from web.uploads import PHOTO_ENDPOINTS

    with app.app_context():
        candidate = clone_version(get_registry(), active_model)
        get_predictor().current()                            # the model doctors are served
    assert {"admin.model_try", "admin.model_try_explain"} <= PHOTO_ENDPOINTS      # held in memory only
    pointer = (Path(app.config["MODELS_DIR"]) / "active.json").read_text()
    photo = png_bytes(coloured_face("gamma", seed=4))
    response = admin.post(f"/admin/models/{candidate}/try", content_type="multipart/form-data", data={
        "photo": (io.BytesIO(photo), "patient.png"), "csrf_token": form_token(admin, f"/admin/models/{candidate}")})
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "Screening result" in page and 'id="probabilities"' in page
    assert f'data-version="{candidate}"' in page and f"Tried on version {candidate}" in page
    assert f'data-explain-url="/admin/models/{candidate}/try/explain"' in page
    assert 'id="feedback"' not in page                  # a tried photo is nobody's case: no clinical assessment
    assert (Path(app.config["MODELS_DIR"]) / "active.json").read_text() == pointer
    with app.app_context():
        assert get_predictor().current().version == active_model
    crop = re.search(r'id="face" src="data:image/png;base64,([^"]+)"', page).group(1)
    import base64
    explained = admin.post(f"/admin/models/{candidate}/try/explain", data={
        "crop": (io.BytesIO(base64.b64decode(crop)), "face.png"), "model_version": candidate,
        "csrf_token": form_token(admin, f"/admin/models/{candidate}")})
    assert explained.status_code == 200 and explained.get_json()["overlay_png_base64"]
    refused = admin.post(f"/admin/models/{candidate}/try", content_type="multipart/form-data", data={
        "photo": (io.BytesIO(b"not a photo"), "x.png"), "csrf_token": form_token(admin, f"/admin/models/{candidate}")})
    assert refused.status_code == 302
    assert "not an image" in admin.get(refused.headers["Location"]).get_data(as_text=True).lower()
    assert not list(Path(app.config["UPLOAD_DIR"]).rglob("*.png"))


def test_the_drill_down_heading_names_the_true_class(admin, active_model):
    page = admin.get(f"/admin/models/{active_model}/predictions?true=1&predicted=2").get_data(as_text=True)
    assert "<h1>beta predicted as gamma</h1>" in page and "True" not in page


def test_a_finished_job_shows_one_status_its_score_against_the_baselines_and_what_to_do_next(admin, app,
                                                                                             active_model):
    from web.services import get_registry
    with app.app_context():
        candidate = clone_version(get_registry(), active_model)
        progress = {"phase": "succeeded", "fraction": 1.0, "fold_accuracies": [1.0, 0.9, 1.0],
                    "baselines": {"majority": 0.33, "hog-svm": 0.8}}
        options = {"backbone": "hog", "head": "linear", "epochs": 30, "regularization": None}
        job = Job(dataset="colours", options_json=json.dumps(options), status="succeeded",
                          progress_json=json.dumps(progress), model_version=candidate)
        db.session.add(job)
        db.session.commit()
        job_id = job.id
    page = admin.get(f"/admin/training/{job_id}").get_data(as_text=True)
    status = re.sub(r"<[^>]+>|\s+", " ", re.search(r'<p id="job-status-line">(.*?)</p>', page, re.S).group(1))
    assert status.split() == ["Status:", "succeeded"]
    assert 'id="folds-chart"' in page and 'id="loss-chart"' not in page         # a linear head has no epochs
    assert "Options: backbone hog, head linear, regularization auto</p>" in page
    assert re.search(r"Cross-validated accuracy <strong>[\d.]+% ± [\d.]+</strong>", page)
    assert "HOG + linear SVM" in page and "majority class" in page
    assert f'href="/admin/models/{candidate}#try"' in page
    assert f"/admin/models/compare?v={candidate}&amp;v={active_model}" in page
    assert f'action="/admin/models/{candidate}/activate"' in page


def test_the_training_form_shows_the_options_of_the_chosen_pipeline_and_the_newest_dataset(admin, app):
    import_here(app, "older", per_class=5)
    time.sleep(1.1)                                       # a later "created" second
    import_here(app, "newer", per_class=5)
    page = admin.get("/admin/training").get_data(as_text=True)
    assert re.search(r'<option selected value="newer">', page)
    fields = dict(re.findall(r'<label class="option" data-name="(\w+)"[^>]*?( hidden)?>', page))
    assert fields["folds"] == "" and fields["regularization"] == ""          # auto + linear
    assert fields["epochs"] == " hidden" and fields["dropout"] == " hidden" and fields["fine_tune_epochs"] == " hidden"
    assert 'data-heads="softmax"' in page and "models/pretrained/ in the data folder" in page
    for folder in app.config["PRETRAINED_DIRS"]:
        assert folder not in page
    chosen = admin.get("/admin/training?dataset=older").get_data(as_text=True)
    assert re.search(r'<option selected value="older">', chosen)


def test_a_fresh_install_shows_the_admin_the_three_steps(admin, app):
    response = admin.get("/")
    assert response.status_code == 302 and response.headers["Location"] == "/admin/"
    page = admin.get("/admin/").get_data(as_text=True)
    steps = re.findall(r'<li class="step( done)?" id="step-(\w+)">', page)
    assert steps == [("", "import"), ("", "train"), ("", "activate")]
    assert "healthy/photo1.jpg" in page and 'href="/admin/datasets"' in page and 'href="/admin/training"' in page
    import_here(app, "colours", per_class=5)
    steps = re.findall(r'<li class="step( done)?" id="step-(\w+)">', admin.get("/admin/").get_data(as_text=True))
    assert steps == [(" done", "import"), ("", "train"), ("", "activate")]


def test_a_model_names_the_dataset_revision_it_was_trained_on_and_finds_its_photos_after_a_change(
        admin, app, active_model, trained):
    from ml.datasets import remove_photo
    version, dataset = trained.version, trained.dataset
    root = Path(app.config["UPLOAD_DIR"]) / "datasets"
    import shutil
    shutil.copytree(dataset.path, root / dataset.id)
    page = admin.get(f"/admin/models/{active_model}").get_data(as_text=True)
    assert re.search(rf"revision\s+{dataset.manifest.checksum[:12]}, the dataset&#39;s current one", page)
    rows = json.loads((version.path / "evaluation.json").read_text())
    beta = [r["image"] for r in rows if r["label"] == 1 and np.argmax(r["probabilities"]) == 1]
    remove_photo(root, dataset.id, beta[0], dataset.manifest.checksum)
    page = admin.get(f"/admin/models/{active_model}").get_data(as_text=True)
    assert "an earlier one: photos were removed or moved since" in page
    cell = admin.get(f"/admin/models/{active_model}/predictions?true=1&predicted=1").get_data(as_text=True)
    shown = sorted(int(i) for i in re.findall(r"/admin/datasets/colours/images/(\d+)", cell))
    assert shown == [i if i < beta[0] else i - 1 for i in beta[1:]] and "removed from colours since" in cell


def test_a_version_is_deleted_from_the_page_the_api_and_the_command_line_and_audited(app, client, tokens,
                                                                                     active_model):
    from tests.helpers import audit_log
    from web.services import get_registry

    with app.app_context():
        registry = get_registry()
        copies = [clone_version(registry, active_model) for _ in range(3)]
        damaged = registry.root / copies[2] / "card.json"
        damaged.write_text(json.dumps(json.loads(damaged.read_text()) | {"created": 12345}))
    admin = login(client, "ada")
    page = admin.get("/admin/models")
    assert page.status_code == 200 and "created is not a str" in page.get_data(as_text=True)      # listed damaged
    listed = admin.get("/api/v1/models", headers={"Authorization": f"Bearer {tokens['admin']}"})
    assert listed.status_code == 200
    assert f'action="/admin/models/{copies[2]}/delete"' in page.get_data(as_text=True)
    assert f'action="/admin/models/{active_model}/delete"' not in page.get_data(as_text=True)

    deleted = admin.post(f"/admin/models/{copies[2]}/delete", data={"csrf_token": form_token(admin, "/admin/models")})
    assert deleted.status_code == 302
    api = app.test_client()
    bearer = {"Authorization": f"Bearer {tokens['admin']}"}
    assert api.delete(f"/api/v1/models/{copies[1]}", headers=bearer).status_code == 204
    refused = api.delete(f"/api/v1/models/{active_model}", headers=bearer)
    assert refused.status_code == 409 and "active one" in refused.get_json()["message"]
    assert api.delete(f"/api/v1/models/{copies[1]}", headers=bearer).status_code == 404
    assert api.delete(f"/api/v1/models/{copies[0]}",
                      headers={"Authorization": f"Bearer {tokens['doctor']}"}).status_code == 403
    result = app.test_cli_runner().invoke(args=["models", "delete", copies[0], "--yes"])
    assert result.exit_code == 0 and f"Deleted model version {copies[0]}" in result.output
    with app.app_context():
        assert [v.version for v in get_registry().versions()] == [active_model] and not get_registry().broken()
    deletions = [(who, target) for who, action, target in audit_log(app) if action == "model.delete"]
    assert [target for _, target in deletions] == [copies[2], copies[1], copies[0]]
    assert [who for who, _ in deletions][:2] == ["ada", "ada"] and deletions[2][0].startswith("cli:")
