"""The JSON API (web/api.py): tokens and roles, health, prediction, dataset imports, training jobs, models."""
import io
import time

import pytest
import skimage.data

from tests.helpers import (SMALL_API_OPTIONS, bearer_headers, coloured_face, form_token, import_here, jpeg_bytes,
                           login, png_bytes, synthetic_entries, write_zip)


def upload_dataset(client, token, archive, name="colours"):
    with open(archive, "rb") as stream:
        return client.post("/api/v1/datasets", headers=bearer_headers(token), content_type="multipart/form-data",
                           data={"archive": (stream, "data.zip"), "name": name, "face_fallback": "whole"})


def wait_for(client, token, job_id, states=("succeeded", "failed", "cancelled"), timeout=240, url=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(url or f"/api/v1/training-jobs/{job_id}", headers=bearer_headers(token)).get_json()
        if job["status"] in states:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s")


@pytest.fixture(autouse=True)
def haar(app):
    app.config["FACE_DETECTOR"] = "haar"         # the generated photos hold no face: the fast detector will do


@pytest.fixture
def colours_zip(tmp_path):
    return write_zip(tmp_path / "colours.zip", synthetic_entries(per_class=8) | {"alpha/notes.txt": b"x"})


def test_health_is_503_until_a_model_is_active(client):
    response = client.get("/api/v1/health")
    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable", "model_version": None}


def test_health_names_the_active_version(client, active_model):
    response = client.get("/api/v1/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "model_version": active_model}


@pytest.mark.parametrize("method, path", [
    ("post", "/api/v1/predict"), ("get", "/api/v1/models"), ("post", "/api/v1/models/x/activate"),
    ("get", "/api/v1/datasets"), ("post", "/api/v1/datasets"), ("post", "/api/v1/training-jobs"),
    ("get", "/api/v1/training-jobs"), ("get", "/api/v1/training-jobs/1"),
])
def test_routes_need_a_token(client, tokens, method, path):
    for headers in ({}, bearer_headers("not-a-token"), {"Authorization": "Basic abc"}):
        response = getattr(client, method)(path, headers=headers)
        assert response.status_code == 401
        assert response.get_json()["error"] == "unauthorized" and "Bearer" in response.get_json()["message"]


@pytest.mark.parametrize("method, path", [
    ("get", "/api/v1/models"), ("post", "/api/v1/models/x/activate"), ("get", "/api/v1/datasets"),
    ("post", "/api/v1/datasets"), ("post", "/api/v1/training-jobs"), ("get", "/api/v1/training-jobs/1"),
])
def test_admin_routes_refuse_doctor_tokens(client, tokens, method, path):
    response = getattr(client, method)(path, headers=bearer_headers(tokens["doctor"]))
    assert response.status_code == 403 and response.get_json()["error"] == "forbidden"


def test_predict_contract_and_errors(client, tokens, active_model):
    doctor = bearer_headers(tokens["doctor"])
    photo = png_bytes(coloured_face("alpha", seed=11))
    response = client.post("/api/v1/predict", headers=doctor, content_type="multipart/form-data",
                           data={"image": (io.BytesIO(photo), "p.png")})
    body = response.get_json()
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    assert body["model_version"] == active_model and set(body["face"]) == {"x", "y", "width", "height"}
    probabilities = [p["probability"] for p in body["predictions"]]
    assert probabilities == sorted(probabilities, reverse=True) and abs(sum(probabilities) - 1) < 1e-5
    assert body["predictions"][0]["label"] == "alpha"

    def post(data):
        return client.post("/api/v1/predict", headers=doctor, content_type="multipart/form-data", data=data)
    assert post({}).status_code == 400
    assert post({"image": (io.BytesIO(b"text"), "x.png")}).get_json()["error"] == "unsupported_media_type"
    truncated = post({"image": (io.BytesIO(photo[:300]), "x.png")})
    assert truncated.status_code == 422 and "truncated" in truncated.get_json()["message"]
    cup = post({"image": (io.BytesIO(png_bytes(skimage.data.coffee())), "cup.png")})
    assert cup.status_code == 422 and "predictions" not in cup.get_json()
    assert cup.get_json()["message"].startswith("No face found in this photo: it does not look like a human face")
    client.application.config["MAX_IMAGE_BYTES"] = 1000
    too_large = post({"image": (io.BytesIO(b"\0" * 100_000), "x.png")})
    assert too_large.status_code == 413 and too_large.get_json()["error"] == "request_entity_too_large"


def test_predict_without_a_model_is_503(client, tokens):
    response = client.post("/api/v1/predict", headers=bearer_headers(tokens["doctor"]),
                           content_type="multipart/form-data",
                           data={"image": (io.BytesIO(png_bytes(coloured_face("alpha", seed=1))), "p.png")})
    assert response.status_code == 503 and response.get_json()["error"] == "service_unavailable"


def test_dataset_upload_answers_at_once_and_the_import_job_tells_the_result(client, tokens, colours_zip):
    admin = tokens["admin"]
    response = upload_dataset(client, admin, colours_zip)
    body = response.get_json()
    assert response.status_code == 202 and body["kind"] == "import" and body["status"] in ("queued", "running")
    assert response.headers["Location"] == f"/api/v1/dataset-imports/{body['id']}"
    assert body["options"]["source"] == "data.zip" and body["dataset"] == "colours"
    job = wait_for(client, admin, body["id"], url=response.headers["Location"])
    result = job["result"]
    assert job["status"] == "succeeded" and result["counts"] == {"alpha": 8, "beta": 8, "gamma": 8}
    assert result["rejected"] == [{"file": "alpha/notes.txt", "reason": result["rejected"][0]["reason"]}]
    assert job["progress"]["fraction"] == 1.0 and job["summary"].startswith("importing photos: photo 25 of 25")
    assert client.get(f"/api/v1/training-jobs/{body['id']}", headers=bearer_headers(admin)).status_code == 404
    cancel = client.post(f"/api/v1/dataset-imports/{body['id']}/cancel", headers=bearer_headers(admin))
    assert cancel.status_code == 409 and "has already ended (succeeded)" in cancel.get_json()["message"]
    assert upload_dataset(client, admin, colours_zip).status_code == 409
    assert upload_dataset(client, admin, colours_zip, name="../x").status_code == 400
    listed = client.get("/api/v1/datasets", headers=bearer_headers(admin)).get_json()["datasets"]
    assert [d["name"] for d in listed] == ["colours"]


@pytest.mark.parametrize("body, status", [
    (None, 400), ({"dataset": 5}, 400), ({"dataset": "absent", "options": {}}, 404),
    ({"dataset": "colours", "options": {"epochs": -1}}, 422), ({"dataset": "colours", "options": {"x": 1}}, 422),
    ({"dataset": "colours", "options": []}, 400),
])
def test_bad_training_requests(app, client, tokens, body, status):
    import_here(app, "colours", per_class=8)
    response = client.post("/api/v1/training-jobs", headers=bearer_headers(tokens["admin"]), json=body)
    assert response.status_code == status and set(response.get_json()) == {"error", "message"}


@pytest.mark.parametrize("path", ["/api/v1/training-jobs", "/api/v1/models/20990101-000000-abcdef/activate"])
def test_json_nested_too_deeply_is_a_bad_request_not_a_server_error(client, tokens, path):
    response = client.post(path, headers=dict(bearer_headers(tokens["admin"]), **{"Content-Type": "application/json"}),
                           data="[" * 20_000)
    assert response.status_code in (400, 404) and set(response.get_json()) == {"error", "message"}


def test_train_activate_and_predict_through_the_api(app, client, tokens):
    admin, doctor = bearer_headers(tokens["admin"]), bearer_headers(tokens["doctor"])
    import_here(app, "colours", per_class=8)
    options = dict(SMALL_API_OPTIONS, head="softmax", epochs=15)       # a training photo is still named at 0.99
    response = client.post("/api/v1/training-jobs", headers=admin, json={"dataset": "colours", "options": options})
    assert response.status_code == 202
    job_id = response.get_json()["id"]
    second = client.post("/api/v1/training-jobs", headers=admin, json={"dataset": "colours", "options": options})
    assert second.status_code == 409 and "one training job runs at a time" in second.get_json()["message"]

    job = wait_for(client, tokens["admin"], job_id)
    assert job["status"] == "succeeded", job
    assert job["progress"]["fraction"] == 1.0 and job["history"][0]["phase"] == "head"
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(job["history"][-1])
    version = job["model_version"]
    models = client.get("/api/v1/models", headers=admin).get_json()
    assert models["active"] is None and models["models"][0]["version"] == version
    row = models["models"][0]
    assert row["backbone"] == "vgg16-imagenet" and row["head"] == "softmax" and row["evaluation"] == "cross-validation"
    assert set(row["baselines"]) == {"majority", "hog-svm"} and set(row["recall"]) == {"alpha", "beta", "gamma"}
    compared = client.get(f"/api/v1/models?compare={version}", headers=admin).get_json()["models"]
    assert [r["version"] for r in compared] == [version]
    assert client.get("/api/v1/models?compare=20990101-000000-abcdef", headers=admin).status_code == 404

    assert client.post(f"/api/v1/models/{version}/activate", headers=admin).status_code == 200
    assert client.post("/api/v1/models/20990101-000000-abcdef/activate", headers=admin).status_code == 404
    assert client.get("/api/v1/health").get_json() == {"status": "ok", "model_version": version}
    photo = png_bytes(coloured_face("beta", seed=1000))     # a training photo: this checks the labels' order
    result = client.post("/api/v1/predict", headers=doctor, content_type="multipart/form-data",
                         data={"image": (io.BytesIO(photo), "p.png")}).get_json()
    assert result["model_version"] == version and result["predictions"][0]["label"] == "beta"


def test_cancel_a_running_job(app, client, tokens):
    admin = bearer_headers(tokens["admin"])
    import_here(app, "colours", per_class=8)
    options = dict(SMALL_API_OPTIONS, head="softmax", epochs=1000, patience=1000)
    job_id = client.post("/api/v1/training-jobs", headers=admin,
                         json={"dataset": "colours", "options": options}).get_json()["id"]
    deadline = time.monotonic() + 120
    while "fold_epoch" not in client.get(f"/api/v1/training-jobs/{job_id}", headers=admin).get_json()["progress"]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert client.post(f"/api/v1/training-jobs/{job_id}/cancel", headers=admin).status_code == 202
    assert wait_for(client, tokens["admin"], job_id)["status"] == "cancelled"
    assert client.get("/api/v1/models", headers=admin).get_json()["models"] == []


def test_a_dlib_face_model_serves_the_api_and_the_doctor_page(app, client, tokens, trained_people, face_photos):
    import shutil

    from web.services import get_registry

    version = trained_people.version
    with app.app_context():
        registry = get_registry()
        shutil.copytree(version.path, registry.root / version.version)
        registry.activate(version.version)
    photo = jpeg_bytes(face_photos["grace_hopper"][::-1][::-1, ::-1])          # a mirrored, unseen variant
    body = client.post("/api/v1/predict", headers=bearer_headers(tokens["doctor"]), content_type="multipart/form-data",
                       data={"image": (io.BytesIO(photo), "p.jpg")}).get_json()
    assert body["model_version"] == version.version and body["face_source"] == "detected"
    assert body["predictions"][0]["label"] == "second"
    login(client, "dan")
    page = client.post("/", content_type="multipart/form-data", data={
        "photo": (io.BytesIO(photo), "p.jpg"), "csrf_token": form_token(client, "/")}).get_data(as_text=True)
    assert 'id="top-label">second<' in page and "random backbone weights" not in page


def test_predict_can_return_the_explanation_and_always_returns_the_decision(client, tokens, active_model):
    import base64

    photo = png_bytes(coloured_face("gamma", seed=13))
    body = client.post("/api/v1/predict?explain=true", headers=bearer_headers(tokens["doctor"]),
                       content_type="multipart/form-data", data={"image": (io.BytesIO(photo), "p.png")}).get_json()
    assert body["explanation"]["method"] == "grad-cam"
    assert base64.b64decode(body["explanation"]["heatmap_png_base64"]).startswith(b"\x89PNG")
    assert body["abstained"] is False and body["decision"] == body["predictions"][0]["label"]
    plain = client.post("/api/v1/predict", headers=bearer_headers(tokens["doctor"]), content_type="multipart/form-data",
                        data={"image": (io.BytesIO(photo), "p.png")}).get_json()
    assert "explanation" not in plain and set(plain) >= {"decision", "abstained", "abstention_reasons"}
    bad = client.post("/api/v1/predict?explain=maybe", headers=bearer_headers(tokens["doctor"]),
                      content_type="multipart/form-data", data={"image": (io.BytesIO(photo), "p.png")})
    assert bad.status_code == 400


def test_a_queued_job_says_whether_a_worker_will_take_it(app, client, tokens, redis_url, monkeypatch):
    from redis import Redis
    from rq import Worker

    from app import create_app
    from tests.helpers import free_port
    from web.jobs.dispatch import current_dispatcher
    admin = bearer_headers(tokens["admin"])
    import_here(app, "colours", per_class=8)
    # A web node of the same site whose jobs go to a queue (a database no other test's worker reads).
    monkeypatch.setenv("FACEDX_REDIS_URL", redis_url.rsplit("/", 1)[0] + "/3")
    queued = create_app({"TESTING": True})
    node = queued.test_client()
    started = node.post("/api/v1/training-jobs", headers=admin, json={"dataset": "colours",
                                                                      "options": SMALL_API_OPTIONS})
    assert started.status_code == 202 and started.get_json()["status"] == "queued"
    assert "No worker is connected" in started.get_json()["waiting"]
    job_url = f"/api/v1/training-jobs/{started.get_json()['id']}"
    login(node, "ada")
    page = node.get(f"/admin/training/{started.get_json()['id']}").get_data(as_text=True)
    assert 'id="job-waiting"' in page and "flask --app app worker" in page
    with queued.app_context():
        queue = current_dispatcher().queue()
        worker = Worker([queue], connection=Redis.from_url(queued.config["REDIS_URL"]))
        worker.register_birth()
        try:
            assert "(1 connected)" in node.get(job_url, headers=admin).get_json()["waiting"]
        finally:
            worker.register_death()
            queue.empty()
    monkeypatch.setenv("FACEDX_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")      # the queue goes away
    unreachable = create_app({"TESTING": True}).test_client()
    job = unreachable.get(job_url, headers=admin).get_json()
    assert job["status"] == "queued" and "cannot be reached" in job["waiting"]   # not declared dead
