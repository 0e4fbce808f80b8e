import base64
import io
import logging
import re

import numpy as np
import pytest
import skimage.data
from PIL import Image

from tests.helpers import (bearer_headers, coloured_face, crop_of, form_token, jpeg_bytes, login, png_bytes, post_crop,
                           post_photo, result_page)


def test_the_page_says_when_no_model_is_active(client, tokens):
    login(client, "dan")
    page = client.get("/").get_data(as_text=True)
    assert "No model is active yet" in page and "administrator" in page
    assert post_photo(client, png_bytes(coloured_face("alpha", seed=1))).status_code == 503


def test_result_shows_every_class_the_crop_and_the_disclaimer(client, tokens, active_model):
    login(client, "dan")
    response = post_photo(client, png_bytes(coloured_face("gamma", seed=3)))
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
    assert post_photo(client, png_bytes(coloured_face("beta", seed=4))).status_code == 200
    after = {p: p.stat().st_mtime_ns for p in data_dir.rglob("*") if p.is_file() and "instance" not in p.parts}
    assert after == before


def test_bad_photos_get_a_message_and_the_form_again(app, client, tokens, active_model):
    login(client, "dan")
    cases = [
        (b"%PDF-1.4", 415, "not an image"),
        (jpeg_bytes(coloured_face("alpha", seed=2))[:200], 422, "damaged or truncated"),
        (png_bytes(skimage.data.coffee()), 422, "No face found in this photo"),            # a coffee cup
        (png_bytes(np.indices((200, 200)).sum(axis=0).astype(np.uint8) // 25 % 2 * 255), 422, "No face found"),
    ]
    for data, status, message in cases:
        response = post_photo(client, data)
        page = response.get_data(as_text=True)
        assert response.status_code == status and message in page and 'id="predict-form"' in page
        assert 'id="decision"' not in page and 'id="probabilities"' not in page
    app.config["MAX_IMAGE_BYTES"] = 10_000
    response = post_photo(client, b"\0" * 200_000)
    assert response.status_code == 413 and "too large" in response.get_data(as_text=True)
    response = client.post("/", data={"csrf_token": form_token(client, "/")}, content_type="multipart/form-data")
    assert response.status_code == 400 and "Choose a photo first" in response.get_data(as_text=True)


def test_result_shows_calibrated_probabilities_a_map_with_its_scale_and_a_print_view(client, tokens, active_model):
    login(client, "dan")
    page = post_photo(client, png_bytes(coloured_face("alpha", seed=6))).get_data(as_text=True)
    assert 'id="face" src="data:image/png;base64,' in page and 'id="heatmap"' in page     # side by side
    assert 'id="map-scale"' in page and "<stop " in page and "Computing the map" in page
    assert "Calibrated probabilities" in page
    assert 'class="print-only"' in page and 'id="print-result"' in page


def test_the_doctor_is_told_to_refer_when_a_result_is_below_the_thresholds(app, client, tokens, active_model,
                                                                           face_photos):
    from web.services import get_registry

    login(client, "dan")
    photo = png_bytes(coloured_face("beta", seed=8))
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


@pytest.mark.parametrize("share, shown", [(1.0, ">99%"), (0.9996, ">99%"), (0.995, ">99%"), (0.994, "99%"),
                                          (0.5, "50%"), (0.123, "12%"), (0.005, "1%"), (0.0049, "<1%"),
                                          (0.0, "<1%")])
def test_probabilities_read_as_whole_percents_never_100_or_0(share, shown):
    from web.models.summaries import clinical_percent

    assert clinical_percent(share) == shown


def test_figures_with_their_interval_read_alike_for_doctors_and_administrators():
    from web.models.summaries import proportion, with_interval

    assert with_interval(1.0, 0.757, 1.0) == ">99% (95% interval 76% to >99%)"
    assert proportion({"k": 11, "n": 12, "value": 11 / 12, "low": 0.646, "high": 0.985}) == \
        "11 of 12: 92% (95% interval 65% to 99%)"
    assert proportion({"k": 0, "n": 0, "value": None, "low": None, "high": None}) == "0 of 0: n/a"


def test_the_result_reads_in_whole_percents_and_in_clinical_terms(app, client, tokens, active_model):
    from web.services import get_registry

    login(client, "dan")
    page = result_page(client)
    table = page[page.index('id="probabilities"'):page.index("</table>")]
    shown = re.findall(r'<td class="number">([^<]*)</td>', table)
    assert len(shown) == 3 and all(re.fullmatch(r">99%|<1%|[1-9][0-9]?%", text) for text in shown), shown
    assert re.search(r"Most likely: <strong id=\"top-label\">gamma</strong> \((>99|[1-9][0-9]?)%\)", page)
    with app.app_context():
        figures = get_registry().get(active_model).card.metrics.clinical["gamma"]
    sensitivity, specificity = figures["sensitivity"], figures["specificity"]
    sentence = " ".join(re.search(r'<p id="clinical-sentence">(.*?)</p>', page, re.S).group(1).split())
    assert sentence.startswith(f"In validation, of {sensitivity['n']} photos labelled <em>gamma</em>, the "
                               f"model named {sensitivity['k']} (sensitivity ")
    assert f"Of {specificity['n']} photos with another label, it did not name <em>gamma</em> for {specificity['k']}" \
        in sentence
    assert "95% interval" in sentence and '<a href="#model-facts"' in page


def test_model_facts_say_what_the_model_is_for_and_what_it_was_not_trained_on(app, client, tokens, active_model):
    login(client, "dan")
    for page in (result_page(client), client.get("/model-facts").get_data(as_text=True)):
        facts = page[page.index('id="model-facts"'):]
        assert "A screening aid for clinicians" in facts                      # the default intended use
        assert "Not grouped by person" in facts                               # the fixture names nobody
        assert '<td data-label="Condition">alpha</td><td class="number" data-label="Photos">14</td>' in facts
        assert "Any condition other than alpha, beta, gamma" in facts
        assert "did not give the sex, age, ancestry" in facts
        assert f"Model version {active_model}" in facts


def test_an_administrator_sets_the_intended_use_that_doctors_read(app, client, tokens, active_model):
    admin = login(app.test_client(), "ada")
    model_page = f"/admin/models/{active_model}"
    assert "This is the default text" in admin.get(model_page).get_data(as_text=True)
    text = "Screening of adults in the genetics clinic <only>."
    response = admin.post(f"{model_page}/intended-use",
                          data={"text": text, "csrf_token": form_token(admin, model_page)})
    assert response.status_code == 302
    assert "Set by ada" in admin.get(model_page).get_data(as_text=True)
    refused = admin.post(f"{model_page}/intended-use", data={"text": "  ", "csrf_token": form_token(admin, model_page)})
    assert refused.status_code == 400 and "Say what the model is for" in refused.get_data(as_text=True)
    login(client, "dan")
    facts = client.get("/model-facts").get_data(as_text=True)
    assert "Screening of adults in the genetics clinic &lt;only&gt;." in facts
    doctor = client.post(f"{model_page}/intended-use", data={"text": "x", "csrf_token": form_token(client, "/")})
    assert doctor.status_code == 403


def test_the_map_of_the_shown_face_is_computed_on_request(client, tokens, active_model):
    login(client, "dan")
    crop = crop_of(result_page(client))
    response = post_crop(client, crop, active_model)
    body = response.get_json()
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    assert body["method"] == "grad-cam" and body["seconds"] >= 0 and isinstance(body["coloured"], bool)
    overlay = Image.open(io.BytesIO(base64.b64decode(body["overlay_png_base64"])))
    assert overlay.format == "PNG" and overlay.size == (256, 256)
    assert "Expected time here: about" in client.get("/").get_data(as_text=True)    # measured from now on


def test_the_map_route_takes_only_a_crop_sized_png_from_a_logged_in_doctor(app, client, tokens, active_model):
    face = coloured_face("alpha", seed=5, size=256)
    login(client, "dan")
    cases = [(jpeg_bytes(face), 400, "PNG"), (png_bytes(face[:200]), 400, "256 x 256"),
             (png_bytes(coloured_face("alpha", seed=5, size=600)), 422, "too large"),
             (b"\x89PNG\r\n\x1a\n" + b"\0" * 100, 415, "not an image")]
    for crop, status, message in cases:
        response = post_crop(client, crop, active_model)
        assert response.status_code == status and message in response.get_json()["message"], response.get_json()
    response = post_crop(client, png_bytes(face), "another-version")
    assert response.status_code == 409 and "analyse the photo again" in response.get_json()["message"]
    assert post_crop(client, png_bytes(face), active_model, csrf_token="forged").status_code == 400
    anonymous = app.test_client().post("/explain", data={"crop": (io.BytesIO(png_bytes(face)), "f.png")})
    assert anonymous.status_code in (302, 400)           # to the login page, or stopped by the CSRF check first


def test_neither_the_photo_nor_the_result_goes_into_the_logs(client, tokens, active_model, caplog):
    login(client, "dan")
    with caplog.at_level(logging.DEBUG):
        page = result_page(client, "beta", name="jane-doe-1970.png")
        post_crop(client, crop_of(page), active_model)
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert "jane-doe" not in logged and not re.search(r"\b(alpha|beta|gamma)\b", logged)


def test_the_result_and_an_error_name_the_file(client, tokens, active_model):
    login(client, "dan")
    assert '<p class="no-print" id="photo-name">Photo: <strong>visit 3.png</strong>' in result_page(
        client, name="visit 3.png")
    refused = post_photo(client, b"%PDF-1.4", "scan <1>.pdf").get_data(as_text=True)
    assert "<strong>scan &lt;1&gt;.pdf</strong>: The file is not an image" in refused


def test_the_form_shows_a_busy_state_and_the_chosen_file_once(client, tokens, active_model):
    login(client, "dan")
    page = client.get("/").get_data(as_text=True)
    assert 'data-expected="This takes a few seconds."' in page        # nothing measured on this server yet
    assert 'id="chosen-file"' in page and 'class="visually-hidden"' in page and 'id="analyse"' in page


def test_advice_is_shown_above_the_result(app, client, tokens, active_model, face_photos):
    from web.services import get_predictor

    dark = (face_photos["astronaut"] * 0.3).astype(np.uint8)
    with app.app_context():
        advice = get_predictor().predict_image(dark).advice
    assert advice
    login(client, "dan")
    page = post_photo(client, png_bytes(dark)).get_data(as_text=True)
    assert page.index('id="advice"') < page.index('id="decision"')
    for item in advice:
        assert f"<li>{item}</li>" in page
    assert "Uncertain: refer for clinical assessment." in page and "Most likely" not in page     # not answered
    reasons = re.search(r'<ol class="reasons" id="abstention-reasons"><li>(.*?)</li>', page).group(1)
    assert reasons.startswith("the photo must be taken again before the model can judge it: the face is too dark")


def test_with_several_faces_the_photo_is_shown_with_the_analysed_face_boxed(client, tokens, active_model,
                                                                           face_photos):
    login(client, "dan")
    two_faces = np.ascontiguousarray(np.concatenate([face_photos["astronaut"], face_photos["astronaut"]], axis=1))
    page = post_photo(client, png_bytes(two_faces)).get_data(as_text=True)
    assert "2 faces are in the photo: the boxed one was analysed" in page
    boxed = re.search(r'id="faces-photo">\s*<img src="data:image/jpeg;base64,([^"]+)"', page).group(1)
    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(boxed))).convert("RGB")).astype(int)
    assert max(image.shape[:2]) == 480                     # a small copy, made in memory
    yellow = (image[..., 0] > 200) & (image[..., 1] > 170) & (image[..., 2] < 90)
    assert yellow.sum() > 200                              # the box's outline


def record_assessment(client, page, assessment, **headers):
    result = re.search(r'name="result" value="([^"]+)"', page).group(1)
    return client.post("/feedback", data={"result": result, "assessment": assessment,
                                          "csrf_token": form_token(client, "/")}, headers=headers)


def test_a_doctor_records_and_amends_an_assessment_without_the_photo(app, client, tokens, active_model):
    from web.db import db
    from web.records import Feedback

    login(client, "dan")
    page = result_page(client, "gamma")
    response = record_assessment(client, page, "not yet known", Accept="application/json")
    assert response.status_code == 200 and "Recorded: not yet known" in response.get_json()["message"]
    assert record_assessment(client, page, "beta").status_code == 302     # the same result, changed: one record
    with app.app_context():
        (record,) = db.session.execute(db.select(Feedback)).scalars().all()
        assert (record.model_version, record.decision, record.assessment) == (active_model, "gamma", "beta")
        assert [label for label, _ in record.probabilities][0] == "gamma" and record.user_id is not None
        assert set(Feedback.__table__.columns.keys()) == {
            "id", "result_id", "user_id", "model_version", "probabilities_json", "decision", "assessment",
            "case_reference", "thumbnail", "created_at", "updated_at"}    # no photo, no name
        assert record.case_reference is None and record.thumbnail is None    # both only where the site opts in
    recent = client.get("/results").get_data(as_text=True)
    assert '<option selected>beta</option>' in recent and "gamma" in recent
    amend = f"/results/{record.id}"
    assert client.post(amend, data={"assessment": "another condition",
                                    "csrf_token": form_token(client, "/results")}).status_code == 302
    unknown = client.post(amend, data={"assessment": "flu", "csrf_token": form_token(client, "/results")})
    assert unknown.status_code == 400
    with app.app_context():
        assert db.session.get(Feedback, record.id).assessment == "another condition"
    admin = login(app.test_client(), "ada")
    assert "You have recorded no assessment yet" in admin.get("/results").get_data(as_text=True)   # only one's own
    others = admin.post(amend, data={"assessment": "beta", "csrf_token": form_token(admin, "/results")})
    assert others.status_code == 404


def record_with_reference(client, page, reference, **headers):
    result = re.search(r'name="result" value="([^"]+)"', page).group(1)
    return client.post("/feedback", headers=headers, data={
        "result": result, "assessment": "beta", "case_reference": reference, "csrf_token": form_token(client, "/")})


def test_by_default_no_face_and_no_case_reference_is_kept_and_the_forms_say_so(app, client, tokens, active_model):
    from web.db import db
    from web.records import Feedback

    login(client, "dan")
    page = result_page(client, "beta")
    assert "printed only; this site does not store it" in page and 'name="case_reference"' not in page
    assert "and no case reference (this site stores none)" in page
    assert len(re.search(r'name="result" value="([^"]+)"', page).group(1)) < 1000        # no thumbnail in it
    assert record_with_reference(client, page, "Case 17").status_code == 302            # sent anyway: not kept
    with app.app_context():
        (record,) = db.session.execute(db.select(Feedback)).scalars().all()
        assert record.case_reference is None and record.thumbnail is None
    recent = " ".join(client.get("/results").get_data(as_text=True).split())
    assert "No photo or face is kept on this site" in recent and "This site stores no case reference" in recent
    assert "Case 17" not in recent and "data:image/jpeg" not in recent and 'data-label="Case"' not in recent


def test_a_site_may_keep_a_face_thumbnail_and_a_case_reference_to_tell_results_apart(app, client, tokens,
                                                                                      active_model):
    from datetime import timedelta

    from web.db import db
    from web.doctor.privacy import purge_thumbnails
    from web.records import Feedback, utcnow

    app.config.update(KEEP_THUMBNAILS_DAYS=7, STORE_CASE_REFERENCE=True)
    login(client, "dan")
    page = result_page(client, "beta")
    assert re.search(r'id="patient-reference" name="case_reference" form="feedback-form"', page)
    assert "and the case reference typed above" in page and "small thumbnail for 7 days" in page
    for unusable, reason in (("x" * 41, "at most 40 characters"), ("Case\x0717", "letters, digits")):
        refused = record_with_reference(client, page, unusable, Accept="application/json")
        assert refused.status_code == 400 and reason in refused.get_json()["message"]
    assert record_with_reference(client, page, "  Case   12-A ").status_code == 302
    assert record_with_reference(client, result_page(client, "gamma", seed=9), "").status_code == 302
    with app.app_context():
        first, second = db.session.execute(db.select(Feedback).order_by(Feedback.id)).scalars().all()
        assert (first.case_reference, second.case_reference) == ("Case 12-A", None)
        thumbnail = Image.open(io.BytesIO(first.thumbnail))
        assert (thumbnail.format, thumbnail.size) == ("JPEG", (64, 64))
    recent = client.get("/results").get_data(as_text=True)
    assert '<td data-label="Case" class="case">Case 12-A</td>' in recent
    assert recent.count('src="data:image/jpeg;base64,') == 2 and "kept as a small thumbnail for 7 days" in recent
    with app.app_context():
        assert purge_thumbnails(now=utcnow() + timedelta(days=6)) == 0
        assert purge_thumbnails(now=utcnow() + timedelta(days=8)) == 2
        assert db.session.get(Feedback, first.id).thumbnail is None
    assert 'src="data:image/jpeg;base64,' not in client.get("/results").get_data(as_text=True)


def test_a_recorded_result_cannot_be_forged(client, tokens, active_model):
    login(client, "dan")
    page = result_page(client)
    forged = page.replace('name="result" value="', 'name="result" value="x')
    assert record_assessment(client, forged, "beta").status_code == 400
    assert record_assessment(client, page, "measles").status_code == 400


def test_the_results_script_gets_its_errors_as_json_with_the_real_reason(app, client, tokens, active_model):
    json_please = {"Accept": "application/json"}
    login(client, "dan")
    page = result_page(client)
    forged = page.replace('name="result" value="', 'name="result" value="x')
    refused = record_assessment(client, forged, "beta", **json_please)
    assert refused.status_code == 400 and "analyse the photo again" in refused.get_json()["message"]
    unknown = record_assessment(client, page, "measles", **json_please)
    assert unknown.status_code == 400 and "Choose the clinical assessment" in unknown.get_json()["message"]
    token = re.search(r'name="result" value="([^"]+)"', page).group(1)
    bad_form = client.post("/feedback", data={"result": token, "assessment": "beta", "csrf_token": "forged"},
                           headers=json_please)
    assert bad_form.status_code == 400 and bad_form.get_json()["error"] == "bad_request"
    ended = app.test_client().post("/feedback", data={"result": token, "assessment": "beta"}, headers=json_please)
    assert ended.status_code in (400, 401) and ended.is_json                 # CSRF first, or the session's end
    assert record_assessment(client, page, "measles").status_code == 400     # a plain form still gets its page
    assert "<!doctype html>" in record_assessment(client, page, "measles").get_data(as_text=True).lower()


def test_a_script_whose_session_has_ended_is_told_so_with_401(app, tokens, active_model):
    app.config["WTF_CSRF_ENABLED"] = False               # only the session is missing here
    response = app.test_client().post("/feedback", data={"result": "x", "assessment": "beta"},
                                      headers={"Accept": "application/json"})
    assert response.status_code == 401 and "log in again" in response.get_json()["message"]
    browser = app.test_client().post("/feedback", data={"result": "x", "assessment": "beta"})
    assert browser.status_code == 302 and "/login?next=" in browser.headers["Location"]


def test_administrators_see_the_agreement_of_assessments_with_the_model(app, client, tokens, active_model):
    login(client, "dan")
    for label, assessment in (("gamma", "gamma"), ("beta", "beta"), ("beta", "gamma"), ("alpha", "not yet known")):
        assert record_assessment(client, result_page(client, label, seed=30), assessment).status_code == 302
    body = client.get(f"/api/v1/models/{active_model}/feedback", headers=bearer_headers(tokens["admin"])).get_json()
    assert body["decisions"] == ["alpha", "beta", "gamma", "referred"]
    assert body["assessments"] == ["alpha", "beta", "gamma", "another condition", "not yet known"]
    assert (body["total"], body["named_and_known"], body["agreed"]) == (4, 3, 2)
    assert body["counts"][2][1] == 1 and body["counts"][4][0] == 1
    doctor = client.get(f"/api/v1/models/{active_model}/feedback", headers=bearer_headers(tokens["doctor"]))
    assert doctor.status_code == 403
    missing = client.get("/api/v1/models/nope/feedback", headers=bearer_headers(tokens["admin"]))
    assert missing.status_code == 404
    admin = login(app.test_client(), "ada")
    table = admin.get(f"/admin/models/{active_model}").get_data(as_text=True)
    assert 'id="agreement"' in table and "they agreed 2 times out of 3" in table
    agreement = table[table.index('id="agreement"'):table.index("</table>", table.index('id="agreement"'))]
    assert agreement.count("diagonal") == 3          # condition = condition only; "another" is not "referred"


def test_error_pages_are_the_apps_own(client, tokens):
    login(client, "dan")
    forbidden = client.get("/admin/models")
    page = forbidden.get_data(as_text=True)
    assert forbidden.status_code == 403 and "This page is for administrators" in page
    assert "logged in as dan" in page and 'class="brand"' in page and "permission" not in page
    missing = client.get("/no-such-page")
    assert missing.status_code == 404 and "Page not found" in missing.get_data(as_text=True)
    assert "requested URL was not found" not in missing.get_data(as_text=True)


def test_pages_for_a_logged_in_user_are_never_cached(client, tokens, active_model):
    assert "no-store" not in client.get("/login").headers.get("Cache-Control", "")
    login(client, "dan")
    for path in ("/", "/model-facts", "/results", "/admin/models"):
        assert client.get(path).headers["Cache-Control"] == "no-store", path


def test_a_version_from_before_clinical_figures_gets_them_from_its_held_out_predictions(trained, tmp_path):
    import shutil

    from ml.versions.registry import ModelRegistry
    from web.models.summaries import clinical_figures_of

    version = trained.version
    registry = ModelRegistry(tmp_path / "models")
    metrics = {k: v for k, v in version.card.metrics.to_dict().items() if k != "clinical"}

    def copy(folder):
        for name in version.card.files:
            shutil.copy(version.path / name, folder / name)
        return version.card.files
    older = registry.save(version.card.replace(metrics=metrics), copy)
    assert older.card.metrics.clinical is None and "clinical" not in older.card.to_dict()["metrics"]
    assert clinical_figures_of(older) == version.card.metrics.clinical


def test_the_facts_name_the_people_a_dataset_left_out():
    from web.models.summaries import blind_spots

    rows = [{"attribute": "sex", "group": "female"}, {"attribute": "age", "group": "18+"},
            {"attribute": "age", "group": "3-12"}]
    spots = blind_spots(["child", "adult"], rows)
    assert spots[0].startswith("Any condition other than child, adult")
    assert "did not give the ancestry of the people photographed" in spots[1]
    assert "No photos of people aged 0-2, 13-17 (in years)." in spots and "Photos of one sex only (female)." in spots
