"""A day on the ward and at the admin's desk, walked in Chromium at 390 and 1280 px: tables, times, charts, words.

Each check names the item of the walk it covers: (1) every table readable on a phone, (2) recent results told
apart, (3) every time in the reader's zone, (7) charts and figures, (9) small words. The site keeps face
thumbnails and case references here (both are off by default; tests/test_web_doctor.py checks that).
Set FACEDX_SCREENS=docs/screens to write the screenshots that docs/screens/README.md lists.
"""
import io
import os
import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.helpers import coloured_face, coloured_noise, png_bytes, web_node, synthetic_entries, write_zip
from tests.helpers import flask_command as flask
from tests.test_browser import log_in

ZONE = "Europe/Paris"          # the browser's zone: one hour ahead of UTC in winter, two in summer
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
DESKTOP = {"viewport": {"width": 1280, "height": 900}}
DOCTOR_PASSWORD = "a ward doctor's long password"
LONG_REJECTED = "beta/scan_of_the_referral_letter_from_the_regional_clinic_2026-11-30_page_2.txt"
# A clock time, with its seconds or not, and the zone written after it (if any).
CLOCK = re.compile(r"\b\d{1,2}:\d{2}(?::\d{2})?\b"
                   r"(?P<after>[ \u00a0][A-Z][A-Za-z]{1,4}(?:[+-]\d{1,2}(?::\d{2})?)?(?![A-Za-z]))?")


@pytest.fixture(scope="module")
def ward(tmp_path_factory):
    """gunicorn on a site that keeps face thumbnails and case references; yield (base URL, admin password)."""
    data = tmp_path_factory.mktemp("ward")
    env = dict(os.environ, FACEDX_DATA_DIR=str(data), FACEDX_THREADS="4", FACEDX_KEEP_THUMBNAILS_DAYS="30",
               FACEDX_STORE_CASE_REFERENCE="1")
    admin_password = flask(env, "setup").split("password:")[1].split()[0]
    flask(env, "user", "create", "doctor", "--role", "doctor", stdin=DOCTOR_PASSWORD + "\n")
    with web_node(env, data / "gunicorn.log") as base:     # killed with its worker and any job process
        yield base, admin_password



def screen(browser, size):
    """Open a page in a fresh context of `size` (PHONE or DESKTOP) in ZONE; it collects the page's script errors."""
    page = browser.new_context(timezone_id=ZONE, locale="en-GB", **size).new_page()
    page.problems = []
    page.on("console", lambda message: message.type == "error" and page.problems.append(message.text))
    page.on("pageerror", lambda error: page.problems.append(str(error)))
    return page


def shot(page, name, target=None):
    """Save a screenshot as docs/screens/<name>.png when FACEDX_SCREENS names the folder (256 colours: small files)."""
    folder = os.environ.get("FACEDX_SCREENS")
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    page.evaluate("() => document.querySelectorAll('img[loading=lazy]').forEach(img => { img.loading = 'eager'; })")
    page.wait_for_function("() => [...document.images].every(img => img.complete)")
    png = (target or page).screenshot(**({} if target else {"full_page": True}))
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(256)
    image.save(Path(folder) / f"{name}.png", optimize=True)


CUT_OFF = """() => {
  // What a reader cannot see whole: any element (a table, a cell, a button, a line of text) reaching past the
  // viewport's right edge or its card's (a card scrolls, with no sign of it), unless it sits in a .scroll box,
  // whose shadows show that it scrolls.
  const page = document.documentElement.clientWidth, cut = [];
  for (const node of document.querySelectorAll("body *")) {
    if (node.ownerSVGElement || node.closest(".scroll, .visually-hidden, table.stack thead, script")) { continue; }
    const box = node.getBoundingClientRect(), card = node.parentElement.closest(".card");
    const limit = card ? Math.min(page, card.getBoundingClientRect().right) : page;
    if (box.width > 0 && box.height > 0 && box.right > limit + 1) {
      cut.push(node.tagName.toLowerCase() + (node.id ? "#" + node.id : "") + " reaches " + Math.round(box.right));
    }
  }
  return cut.concat(document.documentElement.scrollWidth > page ? ["the page scrolls sideways"] : []);
}"""


def check_readable(page):
    """(1) nothing is cut off at this width; (3) every clock time a reader sees carries its zone, in ZONE."""
    assert page.evaluate(CUT_OFF) == [], page.url
    text = page.inner_text("body")
    bare = [m.group(0) for m in CLOCK.finditer(text) if not m.group("after")]
    assert bare == [], (page.url, bare)
    for when in page.locator("time[data-local]").all():
        moment = datetime.fromisoformat(when.get_attribute("datetime")).astimezone(ZoneInfo(ZONE))
        shown = when.inner_text()
        assert shown.startswith(moment.strftime("%Y-%m-%d %H:%M")) and "UTC" not in shown, (page.url, shown)
        assert re.search(r" (CET|CEST|GMT\+[12])$", shown), shown
    assert page.problems == []


def test_a_day_on_the_ward_and_at_the_admins_desk_reads_well_at_390_and_1280_px(ward, browser, tmp_path,
                                                                                  face_photos):
    base, admin_password = ward
    desk, phone = screen(browser, DESKTOP), screen(browser, PHONE)
    log_in(desk, base, "admin", admin_password)
    log_in(phone, base, "admin", admin_password)

    # An import whose rejected files have long names; then a real training on what it kept.
    entries = synthetic_entries(per_class=7) | {LONG_REJECTED: b"a letter, not a photo",
                                                "gamma/noise.png": png_bytes(coloured_noise("gamma", seed=4, size=96))}
    desk.goto(base + "/admin/datasets")
    desk.fill("#name", "ward")
    desk.set_input_files("#archive", str(write_zip(tmp_path / "ward.zip", entries)))
    desk.select_option("#face_fallback", "whole")
    desk.click("#dataset-form button[type=submit]")
    desk.wait_for_url("**/admin/datasets/ward", timeout=180_000)
    desk.goto(base + "/admin/training")
    desk.select_option("#backbone", "vgg16-imagenet")
    desk.select_option("#weights", "none")
    desk.fill("#image_size", "32")
    desk.fill("#folds", "3")
    desk.click("button:has-text('Start training')")
    desk.wait_for_url("**/admin/training/*")
    job = desk.url
    expect(desk.locator("#job-status")).to_have_text("succeeded", timeout=300_000)
    version = desk.inner_text("#job-version")

    # (7) The folds chart: each baseline named once, in the legend, in its own line's colour; no name on the bars.
    for page, width in ((desk, 1280), (phone, 390)):
        page.goto(job)
        expect(page.locator("#folds-chart rect.fold")).to_have_count(3)
        legend = page.locator("#folds-chart-legend .baseline")
        expect(legend).to_have_count(2)
        assert legend.nth(0).inner_text().startswith(("majority class", "HOG + linear SVM"))
        colours = [entry.evaluate("e => getComputedStyle(e, '::before').backgroundImage") for entry in legend.all()]
        lines = [line.evaluate("l => getComputedStyle(l).stroke") for line in
                 page.locator("#folds-chart line.baseline").all()]
        assert colours[0] != colours[1] and lines[0] != lines[1]
        assert all(line.replace(" ", "") in colour.replace(" ", "") for line, colour in zip(lines, colours))
        assert page.locator("#folds-chart text.baseline-label").count() == 0
        values = [text.bounding_box() for text in page.locator("#folds-chart text.value").all()]
        others = [text.bounding_box() for text in page.locator("#folds-chart text:not(.value)").all()]
        assert not any(overlap(v, o) for v in values for o in others)
        check_readable(page)
        shot(page, f"07-folds-{width}", page.locator("#folds"))

    # (7) The version's figures: numbers under right-aligned headers, the doctors' wording, calibration's decision.
    desk.goto(f"{base}/admin/models/{version}")
    for header in desk.locator("#clinical thead th.number, #scores thead th.number").all():
        assert header.evaluate("th => getComputedStyle(th).textAlign") == "right"
    clinical = desk.inner_text("#clinical")
    assert "95% interval" in clinical and "CI" not in clinical and not re.search(r"(?<![>\d])100%", clinical)
    decision = desk.inner_text("#calibration-decision")
    assert re.fullmatch(r"Expected calibration error of predictions the temperature was not fitted on: \d\.\d{3} "
                        r"without temperature scaling, \d\.\d{3} with it\. It is (lower, so temperature scaling is "
                        r"applied \(temperature \d\.\d\d\)|no lower, so temperature scaling is not applied)\.",
                        decision), decision
    assert "kept only because" not in desk.inner_text("#calibration")
    check_readable(desk)
    shot(desk, "07-model-figures-1280", desk.locator("#clinical"))
    shot(desk, "07-calibration-1280", desk.locator("#calibration"))
    force = desk.locator("form:has(button:has-text('Activate this version')) input[name=force]")
    if force.count():
        force.check()
    desk.click("button:has-text('Activate this version')")
    expect(desk.locator(f"#models tr:has-text('{version}') td.action strong")).to_have_text("active")

    # (9) A bundle imported twice says once that it was not imported.
    bundle = tmp_path / "bundle.zip"
    bundle.write_bytes(desk.request.get(f"{base}/admin/models/{version}/bundle").body())
    desk.goto(base + "/admin/models")
    desk.set_input_files("#import input[name=bundle]", str(bundle))
    desk.click("#import button[type=submit]")
    refusal = desk.inner_text("#import .flash.error")
    assert refusal == f"The bundle was not imported: Model version {version} is already here."
    desk.problems.remove("Failed to load resource: the server responded with a status of 409 (CONFLICT)")

    # (1) (3) (9) Every administrator's list at 390 px: stacked rows or a scroll box, times in the reader's zone.
    for path, name in (("/admin/datasets", "01-datasets-390"), ("/admin/datasets/ward", "01-rejected-files-390"),
                       ("/admin/datasets/ward/photos", "09-curation-390"), ("/admin/training", "09-training-form-390"),
                       ("/admin/models", None), (f"/admin/models/{version}", "01-model-390"),
                       ("/admin/users", "01-users-390"), ("/admin/audit", "03-audit-390"), ("/admin/", None)):
        phone.goto(base + path)
        check_readable(phone)
        if name:
            shot(phone, name)
    phone.goto(base + "/admin/datasets/ward")
    rejected = phone.locator("#rejected td.file").first
    assert LONG_REJECTED in rejected.inner_text()
    assert phone.locator("#rejected td[data-label=Reason]").first.is_visible()
    assert "(s)" not in phone.inner_text("main")
    for page in (desk, phone):
        page.goto(base + "/admin/users")
        disable = page.locator("#users tr:has-text('doctor') button:has-text('Disable')")
        box = disable.bounding_box()
        assert box and box["x"] + box["width"] <= page.viewport_size["width"]
    desk.goto(base + "/admin/datasets")
    check_readable(desk)
    shot(desk, "01-datasets-1280")

    # The doctor, on a phone and at a desk.
    for page in (desk, phone):
        page.click("button:has-text('Log out')")
        log_in(page, base, "doctor", DOCTOR_PASSWORD)
    # (9) The drop zone offers the camera on a touch screen only.
    expect(desk.locator("#drop-zone .fine-pointer")).to_be_visible()
    expect(desk.locator("#drop-zone .touch-screen")).to_be_hidden()
    assert "take one" not in desk.inner_text("#drop-zone")
    expect(phone.locator("#drop-zone .touch-screen")).to_have_text("Choose a face photo, or take one with the camera")
    expect(phone.locator("#drop-zone .fine-pointer")).to_be_hidden()
    shot(desk, "09-drop-zone-1280", desk.locator("#predict-form"))
    shot(phone, "09-drop-zone-390", phone.locator("#predict-form"))

    # (2) Two results, each with a case reference; the second photo holds two faces.
    two_faces = np.ascontiguousarray(np.concatenate([face_photos["astronaut"]] * 2, axis=1))
    for photo, reference, assessment in ((coloured_face("beta", seed=41), "Case 12-A", "beta"),
                                         (two_faces, "Case 12-B", "not yet known")):
        path = tmp_path / f"{reference}.png"
        path.write_bytes(png_bytes(photo))
        phone.set_input_files("#photo", str(path))
        phone.click("#analyse")
        phone.wait_for_selector("#decision")
        expect(phone.locator("label:has(#patient-reference)")).to_contain_text("stored with your assessment")
        expect(phone.locator("#feedback-kept")).to_contain_text("and the case reference typed above")
        phone.fill("#patient-reference", reference)
        phone.select_option("#assessment", assessment)
        phone.click("#feedback-form button")
        expect(phone.locator("#feedback-status")).to_contain_text(f"Recorded: {assessment}")
        check_readable(phone)
    # (9) Two faces: the referral says how to retake the photo, first among its reasons.
    expect(phone.locator("#advice")).to_contain_text("take the photo again with only the patient's face in the frame")
    assert phone.locator("#abstention-reasons li").first.inner_text().startswith(
        "the photo must be taken again before the model can judge it: 2 faces are in the photo")
    shot(phone, "09-two-faces-390", phone.locator("#result"))

    # (3) The printout's time is the reader's, with its zone.
    desk.set_input_files("#photo", str(tmp_path / "Case 12-A.png"))
    desk.click("#analyse")
    desk.wait_for_selector("#decision")
    desk.emulate_media(media="print")
    printed = desk.inner_text("#result .print-only")
    assert re.search(r"FaceDx screening result, \d{4}-\d\d-\d\d \d\d:\d\d (CET|CEST|GMT\+[12])\.", printed), printed
    check_readable(desk)
    shot(desk, "03-print-1280", desk.locator("#result"))
    desk.emulate_media(media="screen")

    # (1) (2) My recent results: told apart by face, case and local time; the assessment's select and Save in view.
    for page, width in ((phone, 390), (desk, 1280)):
        page.goto(base + "/results")
        rows = page.locator("#recent-results tbody tr")
        expect(rows).to_have_count(2)
        assert [row.locator("td.case").inner_text() for row in rows.all()] == ["Case 12-B", "Case 12-A"]
        for row in rows.all():
            face = row.locator("td.face img")
            expect(face).to_be_visible()
            assert face.evaluate("img => img.naturalWidth") == 64
            for control in ("select", "button:has-text('Save')"):
                box = row.locator(control).bounding_box()
                assert box["x"] >= 0 and box["x"] + box["width"] <= width, (control, box)
        check_readable(page)
        shot(page, f"01-recent-results-{width}" if width == 390 else f"02-recent-results-{width}")
        page.goto(base + "/model-facts")
        check_readable(page)
        if width == 390:
            shot(page, "01-model-facts-390")


def overlap(a, b):
    """Say whether two boxes (Playwright's) share any area."""
    return a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"] and \
        a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"]
