"""The administrator's desk in a real browser, at a desktop's width and a phone's: confirmations and undo, accounts
and tokens made on the users page, progress that names its start-up, and the map's wait against the time expected.

Set FACEDX_SCREENS=<folder> (docs/screens) to keep a screenshot of each item, named after it: 05-users-create-390.png.
"""
import os
import re
import shutil
import time
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from ml.datasets import import_dataset
from tests.helpers import (SMALL_API_OPTIONS, SYNTHETIC_FACES, coloured_face, png_bytes, web_node,
                           synthetic_entries, write_zip)
from tests.helpers import flask_command as flask
from tests.test_browser import log_in

WIDTHS = (1280, 390)
DOCTOR_PASSWORD = "a doctor's long password"


@pytest.fixture(scope="module")
def desk(tmp_path_factory):
    """Run the set-up and gunicorn with a doctor and a dataset of 90 photos; yield (base URL, admin password, data)."""
    data = tmp_path_factory.mktemp("desk")
    env = dict(os.environ, FACEDX_DATA_DIR=str(data), FACEDX_THREADS="4", FACEDX_FACE_DETECTOR="haar")
    admin_password = flask(env, "setup").split("password:")[1].split()[0]
    flask(env, "user", "create", "doctor", "--role", "doctor", stdin=DOCTOR_PASSWORD + "\n")
    archive = write_zip(data / "walk.zip", synthetic_entries(per_class=30))
    import_dataset(archive, "walk", data / "uploads" / "datasets", face=SYNTHETIC_FACES)
    archive.unlink()
    with web_node(env, data / "gunicorn.log") as base:     # killed with its worker and any job process
        yield base, admin_password, data



@pytest.fixture(params=WIDTHS, ids=lambda width: f"{width}px")
def page(request, browser, desk):
    """A page logged in as the administrator at one of WIDTHS; `page.width` says which."""
    width = request.param
    context = browser.new_context(viewport={"width": width, "height": 844 if width < 600 else 900},
                                  is_mobile=width < 600)
    page = context.new_page()
    page.width, page.problems = width, []
    page.on("pageerror", lambda error: page.problems.append(str(error)))
    log_in(page, desk[0], "admin", desk[1])
    yield page
    context.close()
    assert page.problems == []


def snap(page, name):
    """Keep a screenshot of what is in view as <FACEDX_SCREENS>/<name>-<width>.png (256 colours), when asked to."""
    from PIL import Image

    folder = os.environ.get("FACEDX_SCREENS")
    if folder:
        path = Path(folder) / f"{name}-{page.width}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        page.wait_for_function("() => [...document.images].every(image => { const box = image.getBoundingClientRect();"
                               " return image.complete || box.bottom < 0 || box.top > window.innerHeight; })")
        page.screenshot(path=str(path))
        with Image.open(path) as shot:
            small = shot.convert("RGB").quantize(256)
        small.save(path, optimize=True)


def fits_the_screen(page):
    assert page.locator("html").evaluate("html => html.scrollWidth") <= page.width


def test_4_disabling_a_user_asks_first_and_keep_changes_nothing(page, desk):
    base = desk[0]
    name = f"ward{page.width}"
    flask_user(desk, name)
    page.goto(base + "/admin/users")
    row = page.locator(f"#users tr:has-text('{name}')")
    row.locator("button:has-text('Disable')").click()
    dialog = page.locator("dialog.confirm-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(f"Disable {name}? They are logged out in every browser")
    fits_the_screen(page)
    snap(page, "04-confirm-disable")
    dialog.locator("button:has-text('Keep it enabled')").click()
    expect(dialog).to_have_count(0)
    expect(row).to_contain_text("enabled")
    row.locator("button:has-text('Disable')").click()
    page.locator(f"dialog button:has-text('Disable {name}')").click()
    expect(page.locator(".flash.info")).to_contain_text(f"Disabled {name}")
    expect(page.locator(f"#users tr:has-text('{name}')")).to_contain_text("disabled")


def test_4_a_removed_photo_can_be_undone_and_the_page_stays_where_it_was(page, desk):
    base = desk[0]
    page.goto(f"{base}/admin/datasets/walk/photos?class=1")
    photos = page.locator("#photos .photo")
    expect(photos).to_have_count(30)
    target = photos.nth(24)
    target.scroll_into_view_if_needed()
    before = page.evaluate("window.scrollY")
    assert before > 200
    index, original = target.get_attribute("id").split("-")[1], target.locator("figcaption .muted").inner_text()
    shown = page.locator(f"#photos figcaption:has-text('{original}')")
    target.locator("button:has-text('Remove')").click()
    expect(shown).to_have_count(0)
    expect(photos).to_have_count(29)
    # not back at the top (the page's script puts it back as it loads: wait for that, not for the photos alone)
    page.wait_for_function(f"() => Math.abs(window.scrollY - {before}) < 60")
    undo = page.locator("#undo")
    expect(undo).to_be_in_viewport()
    expect(undo).to_contain_text(f"Removed photo {index} from walk")
    fits_the_screen(page)
    snap(page, "04-undo-remove")
    undo.locator("button:has-text('Undo')").click()
    expect(photos).to_have_count(30)
    expect(shown).to_have_count(1)
    expect(page.locator(".flash.info")).to_contain_text("Undone (removed photo")
    expect(page.locator("#undo")).to_have_count(0)
    page.wait_for_function("() => window.scrollY > 200")


def test_4_and_6_a_training_names_its_start_up_and_cancelling_it_asks_first(page, desk):
    base = desk[0]
    page.goto(base + "/admin/training")
    page.select_option("#dataset", "walk")
    page.select_option("#backbone", SMALL_API_OPTIONS["backbone"])
    page.select_option("#head", "softmax")
    page.fill("#folds", "3")
    page.select_option("#weights", "none")
    page.fill("#image_size", "32")
    page.fill("#epochs", "1000")
    page.click("button:has-text('Start training')")
    page.wait_for_url("**/admin/training/*")
    seen, snapped = set(), False
    deadline = time.monotonic() + 180
    while "cross-validation" not in " ".join(step for _, step, _ in seen):     # every state shown until it trains
        assert time.monotonic() < deadline, seen
        state = tuple(page.evaluate("() => [document.getElementById('job-status').textContent, "
                                    "document.getElementById('job-step').textContent, "
                                    "document.getElementById('job-progress').hasAttribute('value')]"))
        assert state[0] in ("queued", "running"), state
        seen.add(state)
        if state == ("running", "· loading the face networks", False) and not snapped:
            snap(page, "06-training-start")              # named, and its bar moves without claiming a share
            snapped = True
        page.wait_for_timeout(100)
    assert not [state for state in seen if state[0] == "running" and not state[1]], seen
    assert ("running", "· loading the face networks", False) in seen
    snap(page, "06-training-folds")
    page.click("#cancel-form button")
    dialog = page.locator("dialog.confirm-dialog")
    expect(dialog).to_contain_text("Everything it has done so far is lost")
    fits_the_screen(page)
    snap(page, "04-confirm-cancel-training")
    dialog.locator("button:has-text('Keep it running')").click()
    expect(page.locator("#job-status")).to_have_text("running")
    page.click("#cancel-form button")
    page.locator("dialog button:has-text('Cancel the training')").click()
    expect(page.locator("#job-status")).to_have_text("cancelled", timeout=120_000)


def test_5_users_tokens_and_passwords_from_the_users_page(page, desk, browser):
    base = desk[0]
    name = f"newdoc{page.width}"
    page.goto(base + "/admin/users")
    page.fill("#username", name)
    page.select_option("#role", "doctor")
    page.click("#new-user-form button")
    expect(page.locator("#issued")).to_contain_text(f"Created the doctor account {name}.")
    link = page.input_value("#issued-secret")
    assert link.startswith(base + "/set-password?token=")
    fits_the_screen(page)
    snap(page, "05-users-create")

    owner = browser.new_context(viewport={"width": page.width, "height": 844}).new_page()
    owner.width = page.width
    owner.goto(link)
    owner.fill("#password", "a ward doctor's password")
    owner.fill("#repeat", "a ward doctor's password")
    snap(owner, "05-set-password")
    owner.click("#set-password button")
    expect(owner.locator(".flash.info")).to_contain_text("Your password is set")
    log_in(owner, base, name, "a ward doctor's password")
    expect(owner.locator("header.top nav")).to_contain_text(f"Log out {name}")
    owner.goto(link)
    expect(owner.locator("h1")).to_have_text("This link does not work")
    owner.context.close()

    page.goto(base + "/admin/users")
    row = page.locator(f"#users tr:has-text('{name}')")
    row.locator("button:has-text('New API token')").click()
    expect(page.locator("#issued")).to_contain_text("shown only this once")
    token = page.input_value("#issued-secret")
    snap(page, "05-users-token")
    assert predict_without_a_photo(base, token) != 401                 # the token is let in (and told what is missing)
    page.goto(base + "/admin/users")
    expect(page.locator(f"#users tr:has-text('{name}') td.number")).to_have_text("1")
    assert token not in page.content()

    page.locator(f"#users tr:has-text('{name}') button:has-text('Reset password')").click()
    page.locator("dialog button:has-text('Reset the password')").click()
    expect(page.locator("#issued")).to_contain_text(f"Reset the password of {name}: the old one no longer works")
    assert page.input_value("#issued-secret").startswith(base + "/set-password?token=")
    assert predict_without_a_photo(base, token) == 401                 # its tokens were revoked


def test_6_an_import_names_its_start_up_and_counts_photos(page, desk, tmp_path):
    base = desk[0]
    archive = write_zip(tmp_path / "arrivals.zip", synthetic_entries(per_class=40))
    page.goto(base + "/admin/datasets")
    page.fill("#name", f"arrivals{page.width}")
    page.set_input_files("#archive", str(archive))
    page.select_option("#face_fallback", "whole")
    page.click("#dataset-form button[type=submit]")
    page.wait_for_url("**/admin/imports/*")
    seen, snapped, counted = [], False, False
    deadline = time.monotonic() + 180
    while "/admin/imports/" in page.url:
        assert time.monotonic() < deadline, seen
        try:
            state = tuple(page.evaluate("() => [document.getElementById('import-status').textContent, "
                                        "document.getElementById('import-summary').textContent]"))
        except PlaywrightError:            # the page went on to the dataset it made
            break
        seen.append(state)
        if state == ("running", "loading the face networks") and not snapped:
            snap(page, "06-import-start")
            snapped = True
        if state[0] == "running" and "left" in state[1] and not counted:
            snap(page, "06-import-estimate")          # shown once it is steady
            counted = True
        page.wait_for_timeout(50)
    running = [summary for status, summary in seen if status == "running"]
    assert "" not in running and all(re.fullmatch(r"loading the face networks|importing photos: photo [\d,]+ of 120"
                                                  r"( · [\d.]+ photos a second · about \d+ (s|min) left)?", summary)
                                     for summary in running), running
    estimated = [int(re.search(r"photo (\d+)", summary).group(1)) for summary in running if "left" in summary]
    assert min(estimated, default=11) >= 11                # steady first: 8 photos timed, 3 estimates that agree
    page.wait_for_url(f"**/admin/datasets/arrivals{page.width}", timeout=120_000)


def test_8_the_map_says_how_long_it_has_taken_against_the_time_expected(page, desk, trained):
    base, _, data = desk
    from ml.versions.registry import ModelRegistry

    registry = ModelRegistry(data / "models")
    if not (registry.root / trained.version.version).exists():
        shutil.copytree(trained.version.path, registry.root / trained.version.version)
    registry.activate(trained.version.version)
    held = []
    page.route("**/explain", lambda route: held.append(route))          # the map is held until it is looked at
    photo = Path(desk[2]) / f"patient{page.width}.png"
    photo.write_bytes(png_bytes(coloured_face("beta", seed=7)))
    page.click("button:has-text('Log out')")
    log_in(page, base, "doctor", DOCTOR_PASSWORD)
    page.set_input_files("#photo", str(photo))
    page.click("#predict-form button[type=submit]")
    status = page.locator("#map-status")
    expect(status).to_have_text(re.compile(r"Computing the map… \d+ s (of about \d+ s\.|\(the first map here: no "
                                           r"time measured yet\)\.)"))
    first = status.inner_text()
    expect(status).not_to_have_text(first, timeout=5_000)             # it counts the seconds
    expect(status).to_have_text(re.compile(r"Computing the map… [1-9]\d* s"))
    status.scroll_into_view_if_needed()
    snap(page, "08-map-wait")
    if "of about" in first:                 # a map was computed here before: past its time, the page says so
        expect(status).to_contain_text("longer than the about", timeout=60_000)
    deadline = time.monotonic() + 30
    while not held:
        assert time.monotonic() < deadline
        page.wait_for_timeout(50)
    held[0].continue_()
    expect(page.locator("#heatmap")).to_be_visible(timeout=60_000)
    expect(status).to_be_hidden()


def flask_user(desk, name):
    """Create a doctor's account with a throw-away password (through the command, as an IT administrator would)."""
    base, _, data = desk
    env = dict(os.environ, FACEDX_DATA_DIR=str(data))
    flask(env, "user", "create", name, "--role", "doctor", stdin="a throw-away password\n")


def predict_without_a_photo(base, token):
    """Return the status the API answers a prediction sent with `token` and no photo (401: the token is refused)."""
    return requests.post(base + "/api/v1/predict", headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code
