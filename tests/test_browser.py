"""The whole flow in a real browser: headless Debian Chromium driven by Playwright, against gunicorn.

Set FACEDX_SCREENSHOTS=<folder> to keep a screenshot of every page the test visits.
"""
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.helpers import (PROJECT, SMALL_API_OPTIONS, coloured_face, png_bytes, web_node, synthetic_entries,
                           write_zip)
from tests.helpers import flask_command as flask

DOCTOR_PASSWORD = "a doctor's long password"


@dataclass(frozen=True)
class Server:
    """gunicorn on a free port: its base URL, the administrator's password, its data folder and environment."""

    base: str
    admin_password: str
    data: Path
    env: dict


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Run the README's set-up and gunicorn on a free port; return a Server."""
    data = tmp_path_factory.mktemp("live")
    env = dict(os.environ, FACEDX_DATA_DIR=str(data), FACEDX_THREADS="4")
    setup = flask(env, "setup")
    admin_password = setup.split("password:")[1].split()[0]
    flask(env, "user", "create", "doctor", "--role", "doctor", stdin=DOCTOR_PASSWORD + "\n")
    with web_node(env, data / "gunicorn.log") as base:     # killed with its worker and any job process
        yield Server(base=base, admin_password=admin_password, data=data, env=env)



@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.problems = []
    page.on("console", lambda message: message.type == "error" and page.problems.append(message.text))
    page.on("pageerror", lambda error: page.problems.append(str(error)))
    yield page
    context.close()


def snap(page, name):
    folder = os.environ.get("FACEDX_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def with_trained_version(server, trained):
    """Copy the session's trained version into the server's models folder (once); return its registry and name."""
    from ml.versions.registry import ModelRegistry

    registry = ModelRegistry(server.data / "models")
    if not (registry.root / trained.version.version).exists():
        shutil.copytree(trained.version.path, registry.root / trained.version.version)
    return registry, trained.version.version


def log_in(page, base, name, password):
    page.goto(base + "/login")
    page.fill("#username", name)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def test_admin_trains_and_activates_then_a_doctor_predicts(server, page, tmp_path, face_photos):
    base, admin_password = server.base, server.admin_password
    log_in(page, base, "admin", admin_password)

    archive = write_zip(tmp_path / "conditions.zip", synthetic_entries(per_class=8) | {"beta/notes.txt": b"x"})
    page.goto(base + "/admin/datasets")
    page.fill("#name", "colours")
    page.set_input_files("#archive", str(archive))
    page.select_option("#face_fallback", "whole")
    page.click("#dataset-form button[type=submit]")
    page.wait_for_url("**/admin/datasets/colours")
    assert page.inner_text("#counts").split() == ["Condition", "Photos", "alpha", "8", "beta", "8", "gamma", "8"]
    assert "beta/notes.txt" in page.inner_text("#rejected")
    assert page.locator(".thumbs img").count() == 24
    snap(page, "admin-dataset")

    page.click("text=Train on this dataset")
    assert page.input_value("#backbone") == "auto"          # candidates compared by nested cross-validation
    assert "vggface is unavailable" in page.inner_text("#unavailable")
    page.select_option("#backbone", "vgg16-imagenet")
    page.select_option("#head", "softmax")
    page.fill("#folds", "3")
    page.select_option("#weights", "none")
    page.fill("#image_size", "32")
    page.fill("#epochs", "15")                              # enough to name the gamma photo at 0.99
    snap(page, "admin-training")
    page.click("button:has-text('Start training')")
    page.wait_for_url("**/admin/training/*")
    page.locator("#loss-chart polyline.train").wait_for(timeout=120_000)        # curves drawn while it runs
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=180_000)
    assert page.locator("#loss-chart polyline.val").count() == 1
    assert page.locator("#accuracy-chart polyline.train").count() == 1
    assert page.locator("#job-progress").evaluate("bar => bar.value") == 1
    snap(page, "admin-job")

    version = page.inner_text("#job-version")
    page.goto(base + "/admin/models")
    page.click(f"tr:has-text('{version}') button:has-text('Activate')")
    assert "active" in page.inner_text(f"tr:has-text('{version}')")
    page.goto(f"{base}/admin/models/{version}")
    assert page.locator("#confusion tbody tr").count() == 3
    assert "baseline: HOG + linear SVM" in page.inner_text("#scores")
    assert "Expected calibration error" in page.inner_text("#calibration")
    assert page.locator("#reliability rect").count() >= 2
    snap(page, "admin-model")
    page.fill("#min_probability", "0")        # never abstain on the result, so the label can be checked
    page.fill("#min_margin", "0")
    page.click("#thresholds button")
    assert "set by an administrator" in page.inner_text("#calibration")
    page.click("#confusion tbody tr:nth-child(2) td.diagonal a")               # beta predicted as beta
    assert page.locator("#cell-photos img").count() >= 1
    assert page.inner_text("h1") == "beta predicted as beta"
    snap(page, "admin-cell")
    assert page.problems == []

    page.click("button:has-text('Log out')")
    log_in(page, base, "doctor", DOCTOR_PASSWORD)
    photo = tmp_path / "patient.png"
    photo.write_bytes(png_bytes(coloured_face("gamma", seed=21)))    # like the training photos
    snap(page, "doctor-predict")
    page.set_input_files("#photo", str(photo))
    assert page.inner_text("#drop-zone").count("patient.png") == 1
    analyse_held_back(page)
    page.wait_for_selector("#probabilities")
    rows = page.locator("#probabilities tr")
    assert rows.count() == 3
    assert page.inner_text("#top-label") == "gamma" and page.inner_text("#photo-name") == "Photo: patient.png"
    main = page.inner_text("main")
    assert "not a diagnosis" in main and "Calibrated probabilities" in main and "100%" not in main
    expect(page.locator("#clinical-sentence")).to_contain_text(
        "In validation, of 8 photos labelled gamma, the model named ")
    expect(page.locator("#heatmap")).to_be_visible(timeout=60_000)          # loaded after the result
    expect(page.locator("#face")).to_be_visible()
    expect(page.locator("#map-scale")).to_be_visible()
    expect(page.locator("#map-figure")).to_contain_text("Grad-CAM")
    page.select_option("#assessment", "gamma")
    page.click("#feedback-form button")
    expect(page.locator("#feedback-status")).to_contain_text("Recorded: gamma")
    snap(page, "doctor-result-generated")
    page.emulate_media(media="print")                 # the printout keeps the figures, the map and its basis
    for kept in ("#decision", "#clinical-sentence", "#face", "#heatmap", "#map-scale", "#model-facts"):
        expect(page.locator(kept)).to_be_visible()
    for left_off in ("#photo-name", "#feedback", "#patient-reference", "#predict-form"):
        expect(page.locator(left_off)).to_be_hidden()
    snap(page, "doctor-print")
    page.emulate_media(media="screen")
    photo.write_bytes(png_bytes(face_photos["astronaut"]))
    page.set_input_files("#photo", str(photo))
    page.click("button:has-text('Analyse')")
    page.wait_for_selector("#decision")             # a real face unlike the tinted training faces: referred
    assert "no face was detected" not in page.inner_text("#explanation")
    expect(page.locator("#heatmap")).to_be_visible(timeout=60_000)
    snap(page, "doctor-result")
    page.click("a:has-text('Model facts')")
    expect(page.locator("#intended-use")).to_be_in_viewport()
    assert page.problems == []

    page.click("button:has-text('Log out')")
    page.wait_for_url("**/login")
    page.go_back()                          # to the result: never shown again, never a browser error page
    expect(page.locator("#username")).to_be_visible()
    assert "/login" in page.url and page.locator("#probabilities").count() == 0

    log_in(page, base, "admin", admin_password)               # an administrator demands certainty
    page.goto(f"{base}/admin/models/{version}")
    assert page.inner_text("#agreement tbody tr:nth-child(3) td.diagonal") == "1"     # the doctor's gamma
    page.fill("#min_probability", "1")
    page.click("#thresholds button")
    page.click("button:has-text('Log out')")
    log_in(page, base, "doctor", DOCTOR_PASSWORD)
    page.set_input_files("#photo", str(photo))
    page.click("button:has-text('Analyse')")
    expect(page.locator("#decision")).to_contain_text("Uncertain: refer for clinical assessment")
    assert page.locator("#probabilities tr").count() == 3
    assert "Most likely" not in page.inner_text("main")
    snap(page, "doctor-uncertain")
    page.goto(base + "/admin/models")
    expect(page.locator("h1")).to_have_text("This page is for administrators")
    expect(page.locator("header.top nav")).to_contain_text("Log out doctor")          # in the app's layout


def analyse_held_back(page):
    """Click Analyse with the sending held back, check the busy state, then send the form."""
    form = "document.getElementById('predict-form')"
    page.evaluate(f"{form}.addEventListener('submit', event => event.preventDefault())")   # after the page's own
    page.click("button:has-text('Analyse')")
    expect(page.locator("#analyse")).to_be_disabled()
    expect(page.locator("#analyse")).to_have_text("Analysing…")
    # Before any photo was analysed on this server it says "a few seconds"; after, the time measured here.
    expect(page.locator("#busy")).to_have_text(re.compile(r".*(few seconds|Expected time here: about \d+ s\.).*"))
    snap(page, "doctor-busy")
    page.evaluate(f"{form}.submit()")


def test_a_phone_sized_screen_gets_the_camera_picker(server, browser):
    base = server.base
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    log_in(page, base, "doctor", DOCTOR_PASSWORD)
    assert page.get_attribute("#photo", "accept") == "image/*"
    width = page.locator("html").evaluate("html => html.scrollWidth")
    assert width <= 390
    snap(page, "doctor-phone")
    context.close()


MAKE_DOCTORS = """
import sys
from app import create_app
from web.accounts.actions import create_token, create_user
with create_app().app_context():
    for n in range(8):
        print(create_token("cli:test", create_user("cli:test", f"ward{n}", "doctor", sys.argv[1]))[1])
"""


def test_predictions_keep_answering_while_training_and_follow_activation(server, tmp_path):
    import concurrent.futures

    import requests

    base, env = server.base, server.env
    admin = {"Authorization": "Bearer " + flask(env, "token", "create", "admin").split()[-1]}
    # One account holds at most PREDICTIONS_PER_ACCOUNT places: 8 doctors, made in one process by the
    # same account actions the commands use (16 commands would each start Python and the app).
    made = subprocess.run([sys.executable, "-c", MAKE_DOCTORS, DOCTOR_PASSWORD], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    doctors = [{"Authorization": "Bearer " + token} for token in made.stdout.split()[-8:]]
    archive = write_zip(tmp_path / "load.zip", synthetic_entries(per_class=6))
    with open(archive, "rb") as stream:
        created = requests.post(base + "/api/v1/datasets", headers=admin, files={"archive": stream},
                                data={"name": "load", "face_fallback": "whole"}, timeout=120)
    assert created.status_code == 202, created.text
    deadline = time.monotonic() + 120
    while requests.get(base + created.headers["Location"], headers=admin, timeout=30).json()["status"] in (
            "queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.2)

    def run_job(options):
        job = requests.post(base + "/api/v1/training-jobs", headers=admin, timeout=30,
                            json={"dataset": "load", "options": dict(SMALL_API_OPTIONS, **options)})
        assert job.status_code == 202, job.text
        return job.json()["id"]

    def wait(job_id, until):
        deadline = time.monotonic() + 180
        while True:
            job = requests.get(f"{base}/api/v1/training-jobs/{job_id}", headers=admin, timeout=30).json()
            if until(job):
                return job
            assert time.monotonic() < deadline, job
            time.sleep(0.3)

    finished = ("succeeded", "failed", "cancelled")
    first = wait(run_job({}), lambda job: job["status"] in finished)["model_version"]
    assert requests.post(f"{base}/api/v1/models/{first}/activate", headers=admin, timeout=30).status_code == 200

    photo = png_bytes(coloured_face("beta", seed=5))

    def predict(doctor):
        response = requests.post(base + "/api/v1/predict", headers=doctor, files={"image": ("p.png", photo)},
                                 timeout=60)
        return response.status_code, response.json().get("model_version")

    def five_in_a_row(doctor):
        return [predict(doctor) for _ in range(5)]

    long_job = run_job({"head": "softmax", "epochs": 1000, "patience": 1000})
    try:
        wait(long_job, lambda job: "fold_epoch" in job["progress"])      # training is under way
        with concurrent.futures.ThreadPoolExecutor(len(doctors)) as pool:
            answers = [answer for row in pool.map(five_in_a_row, doctors) for answer in row]
        assert answers == [(200, first)] * 40
    finally:                        # a training left running would hold the next test's training
        assert requests.post(f"{base}/api/v1/training-jobs/{long_job}/cancel", headers=admin, timeout=30).ok
        wait(long_job, lambda job: job["status"] in finished)

    second = wait(run_job({}), lambda job: job["status"] in finished)["model_version"]
    assert requests.post(f"{base}/api/v1/models/{second}/activate", headers=admin, timeout=30).status_code == 200
    assert predict(doctors[0]) == (200, second)


def test_admin_curates_a_dataset_watches_the_folds_tries_the_model_then_activates_it(server, page, tmp_path):
    from ml.datasets import import_dataset
    from tests.helpers import SYNTHETIC_FACES

    base, admin_password, data = server.base, server.admin_password, server.data
    import_dataset(write_zip(tmp_path / "curated.zip", synthetic_entries(per_class=8)), "curated",
                   data / "uploads" / "datasets", face=SYNTHETIC_FACES)
    log_in(page, base, "admin", admin_password)
    page.goto(base + "/admin/datasets/curated")
    revision = page.inner_text("#revision")
    page.click("text=Browse, remove or move photos")
    expect(page.locator("#photos .photo")).to_have_count(8)           # waits for the page the click opens
    page.click("#photos .photo:first-child button:has-text('Remove')")
    expect(page.locator(".flash.info")).to_contain_text("Removed photo 0 from curated: revision")
    expect(page.locator("#photos .photo")).to_have_count(7)
    page.goto(base + "/admin/datasets/curated")
    assert page.inner_text("#revision") != revision and page.inner_text("#counts").split()[2:4] == ["alpha", "7"]
    snap(page, "admin-curated")

    page.goto(base + "/admin/models")
    active = page.locator("#models td.action strong:has-text('active')").count() > 0
    page.goto(base + "/admin/training")                   # the defaults: auto, a linear head, 5 folds
    assert page.input_value("#dataset") == "curated"      # the newest dataset
    expect(page.locator("#epochs")).to_be_hidden()        # softmax only
    page.select_option("#head", "softmax")
    expect(page.locator("#epochs")).to_be_visible()
    page.select_option("#head", "linear")
    page.click("button:has-text('Start training')")
    page.wait_for_url("**/admin/training/*")
    job_page = page.url
    page.wait_for_function("() => document.querySelectorAll('#folds-chart rect.fold').length > 0 && "
                           "document.getElementById('job-status').textContent === 'running'", timeout=120_000)
    assert page.locator("#folds-chart line.baseline").count() == 2
    assert page.locator("#candidate-scores tbody tr").count() >= 2         # auto's candidates as they are scored
    assert page.locator("#curves, #loss-chart").count() == 0                # a linear head has no epochs
    snap(page, "admin-job-folds")
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=120_000)
    assert page.inner_text("#job-status-line").split() == ["Status:", "succeeded"]
    expect(page.locator("#folds-chart rect.fold")).to_have_count(5)
    expect(page.locator("#outcome-score")).to_contain_text("Cross-validated accuracy")
    for action in ("Try a photo", "Activate"):
        expect(page.locator("#outcome")).to_contain_text(action)
    compare = page.locator("#outcome a:has-text('Compare with active')")
    expect(compare).to_have_count(1 if active else 0)          # only when another version is active
    snap(page, "admin-job-done")
    version = page.inner_text("#job-version")

    page.click("text=Try a photo")
    photo = tmp_path / "tried.png"
    photo.write_bytes(png_bytes(coloured_face("beta", seed=31)))
    page.set_input_files("#try-photo", str(photo))
    page.click("#try-form button")
    expect(page.locator("#trial")).to_contain_text(f"Tried on version {version}, which is not active")
    assert page.locator("#probabilities tr").count() == 3
    expect(page.locator("#feedback")).to_have_count(0)          # a tried photo is nobody's case: no assessment form
    expect(page.locator("#heatmap")).to_be_visible(timeout=60_000)         # the map of this version
    snap(page, "admin-try")
    page.goto(base + "/admin/models")
    assert "active" not in page.inner_text(f"tr:has-text('{version}')")

    page.goto(job_page)
    force = page.locator("#outcome input[name=force]")
    if force.count():
        force.check()
    page.click("#outcome button:has-text('Activate')")
    assert "active" in page.inner_text(f"tr:has-text('{version}')")
    assert page.problems == []


def test_the_models_table_and_the_charts_are_usable_on_a_phone(server, browser, trained):
    base, admin_password = server.base, server.admin_password
    with_trained_version(server, trained)      # a version to show, whichever tests ran before
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    log_in(page, base, "admin", admin_password)
    page.goto(base + "/admin/models")
    assert page.locator("html").evaluate("html => html.scrollWidth") <= 390
    for row in page.locator("#models tbody tr:not(.broken)").all():
        for cell in ("td[data-label=Accuracy]", "td.action button, td.action strong"):
            box = row.locator(cell).first.bounding_box()
            assert box and box["width"] > 0 and box["x"] + box["width"] <= 390, (cell, box)
    snap(page, "admin-models-phone")
    versions = page.locator("#models td[data-label=Version] a").all_inner_texts()
    assert versions
    for version in versions:
        page.goto(f"{base}/admin/models/{version}")
        assert page.locator("#reliability text.tick").count() == 10
        sizes = page.locator("svg text").evaluate_all(
            "texts => texts.map(t => { const m = t.getScreenCTM(); "
            "return parseFloat(getComputedStyle(t).fontSize) * Math.hypot(m.a, m.b); })")     # rotated ones too
        assert sizes and min(sizes) >= 11, (version, min(sizes))
    snap(page, "admin-model-phone")
    context.close()


def test_a_blurred_photo_is_referred_with_the_retake_advice_first_and_no_answer_shown(server, page, tmp_path,
                                                                                        trained, face_photos):
    import cv2

    from ml.photos.faces import crop_face

    base = server.base
    registry, version = with_trained_version(server, trained)
    registry.activate(version)
    portrait = crop_face(face_photos["grace_hopper"]).image            # her face with a margin, 256 px
    blurred = tmp_path / "blurred.png"
    blurred.write_bytes(png_bytes(cv2.GaussianBlur(portrait, (0, 0), 0.03 * portrait.shape[1])))
    log_in(page, base, "doctor", DOCTOR_PASSWORD)
    page.set_input_files("#photo", str(blurred))
    page.click("#predict-form button[type=submit]")
    expect(page.locator("#decision")).to_have_text("Uncertain: refer for clinical assessment.")
    first_reason = page.locator("#abstention-reasons li").first.inner_text()
    assert first_reason.startswith("the photo must be taken again before the model can judge it: the face is blurred")
    assert "Most likely" not in page.inner_text("main")
    expect(page.locator("#probabilities")).to_be_hidden()           # under "details", not shown as an answer
    expect(page.locator("#probabilities meter").first).to_be_hidden()
    page.click("#details summary")
    expect(page.locator("#probabilities")).to_be_visible()           # there for the clinician who asks
    snap(page, "doctor-blurred-referred")
    assert page.problems == []
