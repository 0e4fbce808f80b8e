import io

import numpy as np

from tests.conftest import coloured_image, form_token, jpeg_bytes, login, png_bytes


def post_photo(client, data, name="photo.png"):
    return client.post("/", data={"photo": (io.BytesIO(data), name), "csrf_token": form_token(client, "/")},
                       content_type="multipart/form-data")


def test_the_page_says_when_no_model_is_active(client, tokens):
    login(client, "dan")
    page = client.get("/").get_data(as_text=True)
    assert "No model is active yet" in page and "administrator" in page
    assert post_photo(client, png_bytes(coloured_image("alpha", seed=1))).status_code == 503


def test_result_shows_every_class_the_crop_and_the_disclaimer(client, tokens, active_model):
    login(client, "dan")
    response = post_photo(client, png_bytes(coloured_image("gamma", seed=3)))
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    for label in ("alpha", "beta", "gamma"):
        assert f'<th scope="row">{label}</th>' in page
    assert 'id="top-label">gamma<' in page
    assert 'src="data:image/png;base64,' in page
    assert active_model in page and "screening aid, not a diagnosis" in page
    assert "random backbone weights, for testing only" in page      # the trained fixture uses weights none


def test_the_photo_is_not_stored(app, client, tokens, active_model, tmp_path):
    login(client, "dan")
    data_dir = tmp_path / "data"
    before = {p: p.stat().st_mtime_ns for p in data_dir.rglob("*") if p.is_file() and "instance" not in p.parts}
    assert post_photo(client, png_bytes(coloured_image("beta", seed=4))).status_code == 200
    after = {p: p.stat().st_mtime_ns for p in data_dir.rglob("*") if p.is_file() and "instance" not in p.parts}
    assert after == before


def test_bad_photos_get_a_message_and_the_form_again(app, client, tokens, active_model):
    login(client, "dan")
    cases = [
        (b"%PDF-1.4", 415, "not an image"),
        (jpeg_bytes(coloured_image("alpha", seed=2))[:200], 422, "damaged or truncated"),
    ]
    for data, status, message in cases:
        response = post_photo(client, data)
        page = response.get_data(as_text=True)
        assert response.status_code == status and message in page and 'id="predict-form"' in page
    app.config["MAX_IMAGE_BYTES"] = 10_000
    response = post_photo(client, b"\0" * 200_000)
    assert response.status_code == 413 and "too large" in response.get_data(as_text=True)
    response = client.post("/", data={"csrf_token": form_token(client, "/")}, content_type="multipart/form-data")
    assert response.status_code == 400 and "Choose a photo first" in response.get_data(as_text=True)


def test_result_shows_the_heat_map_calibrated_probabilities_and_a_print_view(client, tokens, active_model):
    login(client, "dan")
    page = post_photo(client, png_bytes(coloured_image("alpha", seed=6))).get_data(as_text=True)
    assert 'id="heatmap" src="data:image/png;base64,' in page and 'id="show-heatmap"' in page
    assert "Calibrated probabilities" in page and "Grad-CAM" in page
    assert 'class="print-only"' in page and 'id="print-result"' in page


def test_the_doctor_is_told_to_refer_when_a_result_is_below_the_thresholds(app, client, tokens, active_model,
                                                                           face_photos):
    from web import get_registry

    login(client, "dan")
    photo = png_bytes(coloured_image("beta", seed=8))
    clear = post_photo(client, photo).get_data(as_text=True)
    assert 'id="top-label">beta<' in clear and "Uncertain" not in clear
    with app.app_context():
        get_registry().set_thresholds(active_model, 1.0, 0.1)       # an administrator demands certainty
    page = post_photo(client, photo).get_data(as_text=True)
    assert "Uncertain: refer for clinical assessment" in page and "not confident enough" in page
    assert 'id="top-label"' not in page and page.count('<th scope="row">') == 3      # still the ranked list
    with app.app_context():
        get_registry().set_thresholds(active_model, 0.0, 0.0)
    two_faces = np.concatenate([face_photos["astronaut"], face_photos["astronaut"]], axis=1)
    page = post_photo(client, png_bytes(np.ascontiguousarray(two_faces))).get_data(as_text=True)
    assert "Uncertain: refer for clinical assessment" in page and "2 faces are in the photo" in page
