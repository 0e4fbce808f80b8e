"""The same application on PostgreSQL (FACEDX_DATABASE_URL), against a real server started here."""
import io
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers import (
    PASSWORD,
    SMALL_API_OPTIONS,
    bearer_headers,
    concurrent_wrong_logins,
    form_token,
    import_result,
    make_user,
    new_database,
    synthetic_entries,
    write_zip,
)


@pytest.fixture
def pg_app(tmp_path, monkeypatch, postgres_server):
    postgres_url = new_database(postgres_server, f"single_{uuid.uuid4().hex[:8]}")    # one per test
    from flask_migrate import downgrade, upgrade

    from app import create_app

    monkeypatch.setenv("FACEDX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FACEDX_DATABASE_URL", postgres_url)
    app = create_app({"TESTING": True})
    with app.app_context():
        upgrade()                               # the same Alembic migrations as on SQLite
    yield app
    with app.app_context():
        from web.db import db
        db.session.remove()
        downgrade(revision="base")              # the next test starts from an empty database


def test_migrations_accounts_and_a_training_job_on_postgres(pg_app):
    assert pg_app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql://")
    tokens = {"admin": make_user(pg_app, "ada", "admin"), "doctor": make_user(pg_app, "dan", "doctor")}
    client = pg_app.test_client()
    response = client.post("/login", data={"username": "dan", "password": PASSWORD,
                                           "csrf_token": form_token(client, "/login")})
    assert response.status_code == 302
    admin = bearer_headers(tokens["admin"])
    archive = write_zip(Path(pg_app.config["DATA_DIR"]) / "c.zip", synthetic_entries(per_class=6))
    with open(archive, "rb") as stream:
        created = client.post("/api/v1/datasets", headers=admin, content_type="multipart/form-data",
                              data={"archive": (stream, "c.zip"), "name": "colours", "face_fallback": "whole"})
    assert import_result(client, admin, created)["status"] == "succeeded"       # the import's process too
    job = client.post("/api/v1/training-jobs", headers=admin, json={"dataset": "colours", "options": SMALL_API_OPTIONS})
    assert job.status_code == 202
    deadline = time.monotonic() + 180                  # the training process writes to PostgreSQL too
    while (body := client.get(f"/api/v1/training-jobs/{job.get_json()['id']}", headers=admin).get_json())[
            "status"] not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert body["status"] == "succeeded", body
    assert client.post(f"/api/v1/models/{body['model_version']}/activate", headers=admin).status_code == 200
    audit = client.get("/api/v1/health").get_json()
    assert audit["model_version"] == body["model_version"]
    photo = io.BytesIO(synthetic_entries(per_class=1)["alpha/photo0.png"])
    result = client.post("/api/v1/predict", headers=bearer_headers(tokens["doctor"]),
                         content_type="multipart/form-data", data={"image": (photo, "p.png")})
    assert result.status_code == 200


def test_the_login_limit_holds_under_concurrent_guesses_on_postgres(pg_app):
    make_user(pg_app, "dan", "doctor")
    checked, statuses = concurrent_wrong_logins(pg_app, "dan", 40)
    assert checked == 5 and statuses == [401] * 5 + [429] * 35

