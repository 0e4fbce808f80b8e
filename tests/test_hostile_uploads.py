"""A corpus of hostile and broken uploads, built in code, sent through the API as an attacker would."""
import io
import os
import stat
import tempfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from tests.helpers import (
    bearer_headers,
    coloured_face,
    face_haar_misses,
    form_token,
    import_result,
    jpeg_bytes,
    login,
    png_bytes,
    synthetic_entries,
)


def zipped(entries, infos=(), compression=zipfile.ZIP_STORED):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for info, data in infos:
            archive.writestr(info, data)
    return buffer.getvalue()


def upload(client, token, data, name="hostile"):
    return client.post("/api/v1/datasets", headers=bearer_headers(token), content_type="multipart/form-data",
                       data={"archive": (io.BytesIO(data), "upload.zip"), "name": name, "face_fallback": "whole"})


def saved(image, fmt, **options):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def tree(folder):
    return sorted(str(p) for p in folder.rglob("*"))


def test_bad_members_are_rejected_one_by_one_and_nothing_escapes(client, tokens, tmp_path):
    good = synthetic_entries(per_class=5)
    link = zipfile.ZipInfo("alpha/link.png")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    animated = [Image.fromarray(coloured_face(label, 94)) for label in ("gamma", "beta")]
    entries = good | {
        "../../escape.png": good["alpha/photo0.png"],
        "/etc/cron.d/evil.png": good["alpha/photo1.png"],
        "C:\\Windows\\evil.png": good["alpha/photo2.png"],
        "alpha/empty.png": b"",
        "alpha/nested.zip": zipped({"x/y.png": good["alpha/photo3.png"]}),
        "alpha/lies.jpg": b"MZ\x90\x00 this is an executable, not a JPEG",
        "alpha/truncated.png": png_bytes(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))[:300],
        "alpha/bomb.png": saved(Image.new("1", (12_000, 12_000)), "PNG"),
        "gamma/animated.gif": saved(animated[0], "GIF", save_all=True, append_images=animated[1:]),
        "gamma/cmyk.jpg": saved(Image.fromarray(coloured_face("gamma", 91)).convert("CMYK"), "JPEG"),
        "gamma/sixteen.png": saved(Image.fromarray(coloured_face("gamma", 96).mean(axis=2).astype(np.uint16) * 257),
                                   "PNG"),
        "gamma/blank.png": png_bytes(np.full((100, 100, 3), 90, np.uint8)),
        "gamma/tiny.png": png_bytes(coloured_face("gamma", 95, size=8)),
        "gamma/real-png-named.jpg": png_bytes(coloured_face("gamma", 92)),
        "<img src=x onerror=alert(1)>/a.png": good["beta/photo0.png"],
        "beta/cafX.png": png_bytes(coloured_face("beta", 93)),
    }
    before = tree(tmp_path)
    # A name in the old DOS code page, without the UTF-8 flag, as old zip tools write it.
    archive = zipped(entries, [(link, "/etc/passwd")]).replace(b"beta/cafX.png", b"beta/caf\x82.png")
    job = import_result(client, bearer_headers(tokens["admin"]), upload(client, tokens["admin"], archive))
    assert job["status"] == "succeeded", job
    body = job["result"]
    reasons = {item["file"]: item["reason"] for item in body["rejected"]}
    assert "unsafe path" in reasons["../../escape.png"] and "unsafe path" in reasons["/etc/cron.d/evil.png"]
    assert "unsafe path" in reasons["C:\\Windows\\evil.png"]
    assert reasons["alpha/link.png"] == "symbolic link"
    assert reasons["alpha/empty.png"] == "The file is empty."
    assert "not an image" in reasons["alpha/nested.zip"] and "not an image" in reasons["alpha/lies.jpg"]
    assert "truncated" in reasons["alpha/truncated.png"] and "too large" in reasons["alpha/bomb.png"]
    assert "duplicate" in reasons["<img src=x onerror=alert(1)>/a.png"]
    assert "blank" in reasons["gamma/blank.png"] and "too small" in reasons["gamma/tiny.png"]     # used whole
    # Handled, not rejected: animated GIF (first frame), CMYK, 16-bit, a PNG named .jpg, a cp437 name.
    assert body["counts"] == {"alpha": 5, "beta": 6, "gamma": 9}
    assert "beta/café.png" not in reasons
    created = set(tree(tmp_path)) - set(before)
    allowed = (str(tmp_path / "data" / "uploads" / "datasets"), str(tmp_path / "data" / "uploads" / "tmp"),
               str(tmp_path / "data" / "instance"))
    assert all(path.startswith(allowed) for path in created), created
    assert list((tmp_path / "data" / "uploads" / "tmp").iterdir()) == []        # the upload's copy is gone
    assert not (tmp_path.parent / "escape.png").exists()


def test_html_in_class_names_is_escaped_on_every_page(client, tokens):
    from tests.helpers import login

    entries = synthetic_entries(per_class=5, labels=("alpha", "beta"))
    label = "<img src=x onerror=alert(1)>"
    entries |= {f"{label}/{i}.png": png_bytes(coloured_face("gamma", 300 + i)) for i in range(5)}
    assert import_result(client, bearer_headers(tokens["admin"]), upload(client, tokens["admin"], zipped(entries)))[
        "status"] == "succeeded"
    login(client, "ada")
    for path in ("/admin/datasets", "/admin/datasets/hostile"):
        page = client.get(path).get_data(as_text=True)
        assert label not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


@pytest.mark.parametrize("build, status, message", [
    (lambda: zipped({f"alpha/{i}.png": b"" for i in range(30_000)}), 400, "entries; the limit is 20,000"),
    (lambda: zipped(synthetic_entries(per_class=5) | {"alpha/zeros.png": b"\0" * (50 * 1024 ** 2)},
                    compression=zipfile.ZIP_DEFLATED), 400, "zip bomb"),
    (lambda: b"PK\x03\x04 not really a zip", 400, "neither a zip"),
    (lambda: zipped({"alpha/only.png": png_bytes(coloured_face("alpha", 1))}), 400, "at least 2 classes"),
])
def test_whole_archives_refused(client, tokens, tmp_path, build, status, message):
    response = upload(client, tokens["admin"], build())
    assert response.status_code == status and message in response.get_json()["message"]
    assert not (tmp_path / "data" / "uploads" / "datasets" / "hostile").exists()
    assert list((tmp_path / "data" / "uploads" / "tmp").glob("*")) == []
    assert client.get("/api/v1/health").status_code in (200, 503)          # the server is still up


def test_a_total_over_the_limit_is_refused(app, client, tokens):
    app.config["MAX_ARCHIVE_BYTES"] = 100_000
    response = upload(client, tokens["admin"], zipped(synthetic_entries(per_class=10)))
    assert response.status_code == 400 and "unpacks to" in response.get_json()["message"]


def test_a_request_over_the_size_limit_is_refused_before_it_is_read(app, client, tokens):
    app.config["MAX_CONTENT_LENGTH"] = 50_000
    response = upload(client, tokens["admin"], b"x" * 100_000)
    assert response.status_code == 413 and response.get_json()["error"] == "request_entity_too_large"

    environ = {"CONTENT_LENGTH": "100000000", "CONTENT_TYPE": "multipart/form-data; boundary=x",
               "wsgi.input": Unreadable(), "HTTP_AUTHORIZATION": f"Bearer {tokens['doctor']}"}
    response = client.post("/api/v1/predict", environ_overrides=environ)
    assert response.status_code == 413


def test_exif_rotated_photo_is_predicted_upright(client, tokens, active_model):
    # Stored turned a quarter to the right; orientation 8 turns it back. Sideways, the face gate sees no face.
    rotated = Image.fromarray(face_haar_misses("beta")).rotate(-90)
    exif = rotated.getexif()
    exif[0x0112] = 8
    data = saved(rotated, "JPEG", exif=exif, quality=95)
    body = client.post("/api/v1/predict", headers=bearer_headers(tokens["doctor"]), content_type="multipart/form-data",
                       data={"image": (io.BytesIO(data), "p.jpg")}).get_json()
    assert body["face"]["width"] == 96 and body["predictions"][0]["label"] == "beta"


def test_bad_photos_through_the_api(client, tokens, active_model):
    cases = [(b"", 422, "empty"), (b"GIF89a broken", 415, "not an image"), (b"%PDF", 415, "not an image"),
             (jpeg_bytes(coloured_face("alpha", 1))[:100], 422, "damaged"),
             (saved(Image.new("1", (12_000, 12_000)), "PNG"), 422, "too large")]
    for data, status, message in cases:
        response = client.post("/api/v1/predict", headers=bearer_headers(tokens["doctor"]),
                               content_type="multipart/form-data", data={"image": (io.BytesIO(data), "p")})
        assert response.status_code == status and message in response.get_json()["message"], data[:10]


def open_files_under(folder):
    """Return the files under `folder` this process holds open, deleted ones included."""
    found = []
    for descriptor in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{descriptor}")
        except OSError:
            continue
        if target.startswith(str(folder)):
            found.append(target)
    return found


@pytest.fixture
def system_temp(tmp_path, monkeypatch):
    """Point the system's temporary folder at an empty one; return it."""
    folder = tmp_path / "system-temp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def files_open_while_decoding(monkeypatch):
    """Record, while each upload is decoded, which files the process holds open (as `open_files_under` sees)."""
    seen = []
    opened = Image.open

    def recording_open(*args, **kwargs):
        seen.append(open_files_under("/"))
        return opened(*args, **kwargs)
    monkeypatch.setattr(Image, "open", recording_open)
    return seen


def multipart(fields, boundary=b"facedx-boundary"):
    """Return (body, content type) of a multipart form from [(name, filename bytes or None, data bytes)]."""
    body = b""
    for name, filename, data in fields:
        disposition = b'form-data; name="' + name + b'"' + (b'; filename="' + filename + b'"' if filename else b"")
        body += b"--" + boundary + b"\r\nContent-Disposition: " + disposition + b"\r\n\r\n" + data + b"\r\n"
    return body + b"--" + boundary + b"--\r\n", "multipart/form-data; boundary=" + boundary.decode()


def photo_over_500_kb():
    data = png_bytes(np.random.default_rng(5).integers(0, 255, (600, 600, 3), np.uint8))
    assert len(data) > 600 * 1024          # Werkzeug spools a part over 500 KB to a temporary file
    return data


def test_a_photo_is_held_in_memory_only_while_it_is_analysed(client, tokens, active_model, system_temp,
                                                             files_open_while_decoding):
    photo = photo_over_500_kb()
    # Bodies built here: the test client would spool a large dict-built one to a temporary file itself.
    body, content_type = multipart([(b"image", b"patient.png", photo)])
    client.post("/api/v1/predict", headers=bearer_headers(tokens["doctor"]), data=body, content_type=content_type)
    login(client, "dan")
    body, content_type = multipart([(b"csrf_token", None, form_token(client, "/").encode()),
                                    (b"photo", b"patient.png", photo)])
    client.post("/", data=body, content_type=content_type)
    assert len(files_open_while_decoding) >= 2          # both uploads were decoded
    for open_files in files_open_while_decoding:
        assert not [path for path in open_files if path.startswith(str(system_temp))]


def test_an_archive_spools_into_the_data_folder_not_the_system_temp(client, tokens, tmp_path, system_temp,
                                                                    monkeypatch):
    import web.datasets.imports

    seen, checked = [], web.datasets.imports.check_archive

    def recording_check(*args, **kwargs):          # while the request holds the uploaded archive
        seen.append(open_files_under(tmp_path))
        return checked(*args, **kwargs)
    monkeypatch.setattr(web.datasets.imports, "check_archive", recording_check)
    entries = synthetic_entries(per_class=5) | {"alpha/filler.bin": os.urandom(600 * 1024)}
    body, content_type = multipart([(b"archive", b"upload.zip", zipped(entries)), (b"name", None, b"hostile"),
                                    (b"face_fallback", None, b"whole")])
    response = client.post("/api/v1/datasets", headers=bearer_headers(tokens["admin"]),
                           data=body, content_type=content_type)
    assert import_result(client, bearer_headers(tokens["admin"]), response)["status"] == "succeeded"
    private = tmp_path / "data" / "uploads" / "tmp"
    assert seen and not [path for path in seen[0] if path.startswith(str(system_temp))]
    assert [path for path in seen[0] if path.startswith(str(private)) and path.endswith("(deleted)")]
    assert stat.S_IMODE(private.stat().st_mode) == 0o700


class Unreadable(io.RawIOBase):
    """A request body the server must refuse without reading it."""

    def readinto(self, buffer):
        raise AssertionError("the body was read")


def unread_post(client, path, length, **environ):
    """POST a multipart body of `length` bytes that fails the test if the server reads it."""
    return client.post(path, environ_overrides={
        "CONTENT_LENGTH": str(length), "CONTENT_TYPE": "multipart/form-data; boundary=x",
        "wsgi.input": Unreadable(), **environ})


def test_each_route_refuses_a_body_larger_than_it_needs_before_reading_it(client, tokens):
    assert unread_post(client, "/login", 100_000).status_code == 413
    anonymous = unread_post(client, "/", 1_000_000)                  # a photo, from no one
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
    login(client, "dan")
    assert unread_post(client, "/admin/datasets", 1_000_000).status_code == 413   # an archive, from a doctor
    assert unread_post(client, "/api/v1/training-jobs", 100_000, CONTENT_TYPE="application/json",
                       HTTP_AUTHORIZATION=f"Bearer {tokens['admin']}").status_code == 413


def test_a_file_name_that_is_not_utf8_is_refused_with_the_reason(client, tokens):
    photo = png_bytes(coloured_face("alpha", 1))
    body, content_type = multipart([(b"image", "café.png".encode("latin-1"), photo)])
    response = client.post("/api/v1/predict", headers=bearer_headers(tokens["doctor"]),
                           data=body, content_type=content_type)
    assert response.status_code == 400 and "not UTF-8" in response.get_json()["message"]
    login(client, "dan")
    body, content_type = multipart([(b"csrf_token", None, form_token(client, "/").encode()),
                                    (b"photo", "café.png".encode("latin-1"), photo)])
    page = client.post("/", data=body, content_type=content_type).get_data(as_text=True)
    assert "not UTF-8" in page and "CSRF" not in page


@pytest.mark.parametrize("job_id", [2 ** 63 - 1, 2 ** 63, 10 ** 20])
def test_a_job_id_out_of_any_range_is_not_found(client, tokens, job_id):
    admin = bearer_headers(tokens["admin"])
    assert client.get(f"/api/v1/training-jobs/{job_id}", headers=admin).status_code == 404
    assert client.post(f"/api/v1/training-jobs/{job_id}/cancel", headers=admin).status_code == 404
    login(client, "ada")
    for path in (f"/admin/training/{job_id}", f"/admin/training/{job_id}.json"):
        assert client.get(path).status_code == 404
    token = form_token(client, "/admin/training")
    assert client.post(f"/admin/training/{job_id}/cancel", data={"csrf_token": token}).status_code == 404
