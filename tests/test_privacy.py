"""Patient photos stay in memory unless an operator opts in; logs carry no patient data."""
import io
import logging
from datetime import date, timedelta

from tests.helpers import coloured_face, form_token, login, png_bytes


def files_under(folder):
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file() and "instance" not in p.parts}


def test_predictions_write_nothing_by_default(app, client, tokens, active_model, tmp_path):
    login(client, "dan")
    before = files_under(tmp_path / "data")
    instance_before = set((tmp_path / "data" / "instance").rglob("*"))
    client.post("/", content_type="multipart/form-data", data={
        "photo": (io.BytesIO(png_bytes(coloured_face("alpha", seed=1))), "jane-doe.png"),
        "csrf_token": form_token(client, "/")})
    client.post("/api/v1/predict", headers={"Authorization": f"Bearer {tokens['doctor']}"},
                content_type="multipart/form-data",
                data={"image": (io.BytesIO(png_bytes(coloured_face("beta", seed=2))), "john-doe.png")})
    assert files_under(tmp_path / "data") == before
    new = {p for p in set((tmp_path / "data" / "instance").rglob("*")) - instance_before
           if not p.name.startswith("facedx.sqlite")}
    assert new == set()


def test_logs_of_a_prediction_hold_no_patient_data(app, client, tokens, active_model, caplog):
    photo = png_bytes(coloured_face("gamma", seed=3))
    with caplog.at_level(logging.DEBUG):
        body = client.post("/api/v1/predict?explain=true", headers={"Authorization": f"Bearer {tokens['doctor']}"},
                           content_type="multipart/form-data",
                           data={"image": (io.BytesIO(photo), "patient-4711.png")}).get_json()
    text = caplog.text
    assert "patient-4711" not in text
    for label in ("alpha", "beta", "gamma"):
        assert label not in text
    assert body["predictions"] and photo[:64].hex() not in text


def test_an_operator_may_keep_photos_for_a_while_and_purge_them(app, client, tokens, active_model, runner):
    app.config["KEEP_PHOTOS_DAYS"] = 7
    photo = png_bytes(coloured_face("alpha", seed=4))
    client.post("/api/v1/predict", headers={"Authorization": f"Bearer {tokens['doctor']}"},
                content_type="multipart/form-data", data={"image": (io.BytesIO(photo), "jane-doe.png")})
    with app.app_context():
        from web.doctor.privacy import kept_root, purge_photos
        kept = list(kept_root().rglob("*.img"))
        assert len(kept) == 1 and kept[0].read_bytes() == photo and "jane" not in kept[0].name
        assert kept[0].stat().st_mode & 0o077 == 0
        assert purge_photos(today=date.today() + timedelta(days=7)) == 0      # still within 7 days
        assert purge_photos(today=date.today() + timedelta(days=8)) == 1
    app.config["KEEP_PHOTOS_DAYS"] = 0
    client.post("/api/v1/predict", headers={"Authorization": f"Bearer {tokens['doctor']}"},
                content_type="multipart/form-data", data={"image": (io.BytesIO(photo), "x.png")})
    result = runner.invoke(args=["photos", "purge"])
    assert result.exit_code == 0 and "Deleted 0 kept photos and 0 face thumbnails." in result.output


def test_admin_actions_are_audited_without_patient_data(app, client, tokens, active_model):
    login(client, "ada")
    client.post("/admin/models/rollback", data={"csrf_token": form_token(client, "/admin/models")})
    client.post(f"/admin/models/{active_model}/activate", data={"csrf_token": form_token(client, "/admin/models")})
    page = client.get("/admin/audit").get_data(as_text=True)
    assert "model.activate" in page and active_model in page and "ada" in page


def test_only_what_decodes_as_an_image_is_kept(app, client, tokens, active_model):
    app.config["KEEP_PHOTOS_DAYS"] = 7
    for data in (b"%PDF-1.7 a letter about the patient", png_bytes(coloured_face("beta", seed=5))[:300]):
        response = client.post("/api/v1/predict", headers={"Authorization": f"Bearer {tokens['doctor']}"},
                               content_type="multipart/form-data", data={"image": (io.BytesIO(data), "scan.png")})
        assert response.status_code in (415, 422)
    with app.app_context():
        from web.doctor.privacy import kept_root
        assert list(kept_root().rglob("*.img")) == []
