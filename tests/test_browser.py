"""The whole flow in a real browser: headless Debian Chromium driven by Playwright, against gunicorn.

Set FACEDX_SCREENSHOTS=<folder> to keep a screenshot of every page the test visits.
"""
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.conftest import SMALL_API_OPTIONS, coloured_image, png_bytes, start_web_node, synthetic_entries, write_zip
from tests.conftest import flask_command as flask

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Chromium must not try to reach the internet: this machine (and a hospital's) has none.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DOCTOR_PASSWORD = "a doctor's long password"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Run the README's set-up and gunicorn on a free port; return (base URL, admin password)."""
    data = tmp_path_factory.mktemp("live")
    env = dict(os.environ, FACEDX_DATA_DIR=str(data), FACEDX_THREADS="4")
    setup = flask(env, "setup")
    admin_password = setup.split("password:")[1].split()[0]
    flask(env, "user", "create", "doctor", "--role", "doctor", stdin=DOCTOR_PASSWORD + "\n")
    log = open(data / "gunicorn.log", "w")
    process, base = start_web_node(env, log)
    yield base, admin_password, data, env
    os.killpg(process.pid, signal.SIGKILL)     # gunicorn, its worker and any training process
    process.wait(timeout=30)
    log.close()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


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


def log_in(page, base, name, password):
    page.goto(base + "/login")
    page.fill("#username", name)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def test_admin_trains_and_activates_then_a_doctor_predicts(server, page, tmp_path, face_photos):
    base, admin_password, _, _ = server
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
    page.fill("#epochs", "40")
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
    snap(page, "admin-cell")
    assert page.problems == []

    page.click("button:has-text('Log out')")
    log_in(page, base, "doctor", DOCTOR_PASSWORD)
    photo = tmp_path / "patient.png"
    photo.write_bytes(png_bytes(coloured_image("gamma", seed=21)))    # like the training photos
    snap(page, "doctor-predict")
    page.set_input_files("#photo", str(photo))
    page.click("button:has-text('Analyse')")
    page.wait_for_selector("#probabilities")
    rows = page.locator("#probabilities tr")
    assert rows.count() == 3
    assert page.inner_text("#top-label") == "gamma"
    assert "not a diagnosis" in page.inner_text("main") and "Calibrated probabilities" in page.inner_text("main")
    expect(page.locator("#heatmap")).to_be_visible()
    page.uncheck("#show-heatmap")
    expect(page.locator("#heatmap")).to_be_hidden()
    page.check("#show-heatmap")
    snap(page, "doctor-result-generated")
    photo.write_bytes(png_bytes(face_photos["astronaut"]))
    page.set_input_files("#photo", str(photo))
    page.click("button:has-text('Analyse')")
    page.wait_for_selector("#probabilities")
    assert "no face was detected" not in page.inner_text("figcaption")
    snap(page, "doctor-result")
    assert page.problems == []
    page.goto(base + "/admin/models")
    assert "403" in page.inner_text("main")

    page.click("button:has-text('Log out')")                  # an administrator demands certainty
    log_in(page, base, "admin", admin_password)
    page.goto(f"{base}/admin/models/{version}")
    page.fill("#min_probability", "1")
    page.click("#thresholds button")
    page.click("button:has-text('Log out')")
    log_in(page, base, "doctor", DOCTOR_PASSWORD)
    page.set_input_files("#photo", str(photo))
    page.click("button:has-text('Analyse')")
    expect(page.locator("#decision")).to_contain_text("Uncertain: refer for clinical assessment")
    assert page.locator("#probabilities tr").count() == 3
    snap(page, "doctor-uncertain")


def test_a_phone_sized_screen_gets_the_camera_picker(server, browser):
    base, _, _, _ = server
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    log_in(page, base, "doctor", DOCTOR_PASSWORD)
    assert page.get_attribute("#photo", "accept") == "image/*"
    width = page.locator("html").evaluate("html => html.scrollWidth")
    assert width <= 390
    snap(page, "doctor-phone")
    context.close()


def test_predictions_keep_answering_while_training_and_follow_activation(server, tmp_path):
    import concurrent.futures

    import requests

    base, _, _, env = server
    admin = {"Authorization": "Bearer " + flask(env, "token", "create", "admin").split()[-1]}
    doctor = {"Authorization": "Bearer " + flask(env, "token", "create", "doctor").split()[-1]}
    archive = write_zip(tmp_path / "load.zip", synthetic_entries(per_class=6))
    with open(archive, "rb") as stream:
        created = requests.post(base + "/api/v1/datasets", headers=admin, files={"archive": stream},
                                data={"name": "load", "face_fallback": "whole"}, timeout=120)
    assert created.status_code == 201, created.text

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

    photo = png_bytes(coloured_image("beta", seed=5))

    def predict(_):
        response = requests.post(base + "/api/v1/predict", headers=doctor, files={"image": ("p.png", photo)},
                                 timeout=60)
        return response.status_code, response.json().get("model_version")

    long_job = run_job({"head": "softmax", "epochs": 1000, "patience": 1000})
    wait(long_job, lambda job: "fold_epoch" in job["progress"])      # training is under way
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(predict, range(40)))
    assert answers == [(200, first)] * 40
    assert requests.post(f"{base}/api/v1/training-jobs/{long_job}/cancel", headers=admin, timeout=30).ok
    wait(long_job, lambda job: job["status"] in finished)

    second = wait(run_job({}), lambda job: job["status"] in finished)["model_version"]
    assert requests.post(f"{base}/api/v1/models/{second}/activate", headers=admin, timeout=30).status_code == 200
    assert predict(0) == (200, second)
