"""A corpus of hostile and broken uploads, built in code, sent through the API as an attacker would."""
import io
import stat
import zipfile

import numpy as np
import pytest
from PIL import Image

from tests.conftest import coloured_image, jpeg_bytes, png_bytes, synthetic_entries


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def zipped(entries, infos=(), compression=zipfile.ZIP_STORED):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for info, data in infos:
            archive.writestr(info, data)
    return buffer.getvalue()


def upload(client, token, data, name="hostile"):
    return client.post("/api/v1/datasets", headers=bearer(token), content_type="multipart/form-data",
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
    animated = [Image.fromarray(coloured_image(label, 94)) for label in ("gamma", "beta")]
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
        "gamma/cmyk.jpg": saved(Image.fromarray(coloured_image("gamma", 91)).convert("CMYK"), "JPEG"),
        "gamma/sixteen.png": saved(Image.fromarray(np.random.default_rng(1).integers(20000, 40000, (64, 64))
                                                   .astype(np.uint16)), "PNG"),
        "gamma/blank.png": png_bytes(np.full((100, 100, 3), 90, np.uint8)),
        "gamma/tiny.png": png_bytes(coloured_image("gamma", 95, size=8)),
        "gamma/real-png-named.jpg": png_bytes(coloured_image("gamma", 92)),
        "<img src=x onerror=alert(1)>/a.png": good["beta/photo0.png"],
        "beta/cafX.png": png_bytes(coloured_image("beta", 93)),
    }
    before = tree(tmp_path)
    # A name in the old DOS code page, without the UTF-8 flag, as old zip tools write it.
    archive = zipped(entries, [(link, "/etc/passwd")]).replace(b"beta/cafX.png", b"beta/caf\x82.png")
    response = upload(client, tokens["admin"], archive)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
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
    from tests.conftest import login

    entries = synthetic_entries(per_class=5, labels=("alpha", "beta"))
    label = "<img src=x onerror=alert(1)>"
    entries |= {f"{label}/{i}.png": png_bytes(coloured_image("gamma", 300 + i)) for i in range(5)}
    assert upload(client, tokens["admin"], zipped(entries)).status_code == 201
    login(client, "ada")
    for path in ("/admin/datasets", "/admin/datasets/hostile"):
        page = client.get(path).get_data(as_text=True)
        assert label not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


@pytest.mark.parametrize("build, status, message", [
    (lambda: zipped({f"alpha/{i}.png": b"" for i in range(30_000)}), 400, "entries; the limit is 20,000"),
    (lambda: zipped(synthetic_entries(per_class=5) | {"alpha/zeros.png": b"\0" * (50 * 1024 ** 2)},
                    compression=zipfile.ZIP_DEFLATED), 400, "zip bomb"),
    (lambda: b"PK\x03\x04 not really a zip", 400, "neither a zip"),
    (lambda: zipped({"alpha/only.png": png_bytes(coloured_image("alpha", 1))}), 400, "at least 2 classes"),
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

    class Unreadable(io.RawIOBase):             # a body the server must not even start reading
        def readinto(self, buffer):
            raise AssertionError("the body was read")
    environ = {"CONTENT_LENGTH": "100000000", "CONTENT_TYPE": "multipart/form-data; boundary=x",
               "wsgi.input": Unreadable(), "HTTP_AUTHORIZATION": f"Bearer {tokens['doctor']}"}
    response = client.post("/api/v1/predict", environ_overrides=environ)
    assert response.status_code == 413


def test_exif_rotated_photo_is_predicted_upright(client, tokens, active_model):
    rotated = Image.fromarray(coloured_image("beta", seed=44))
    exif = rotated.getexif()
    exif[0x0112] = 8
    data = saved(rotated, "JPEG", exif=exif, quality=95)
    body = client.post("/api/v1/predict", headers=bearer(tokens["doctor"]), content_type="multipart/form-data",
                       data={"image": (io.BytesIO(data), "p.jpg")}).get_json()
    assert body["face"]["width"] == 48 and body["predictions"][0]["label"] == "beta"


def test_bad_photos_through_the_api(client, tokens, active_model):
    cases = [(b"", 422, "empty"), (b"GIF89a broken", 415, "not an image"), (b"%PDF", 415, "not an image"),
             (jpeg_bytes(coloured_image("alpha", 1))[:100], 422, "damaged"),
             (saved(Image.new("1", (12_000, 12_000)), "PNG"), 422, "too large")]
    for data, status, message in cases:
        response = client.post("/api/v1/predict", headers=bearer(tokens["doctor"]),
                               content_type="multipart/form-data", data={"image": (io.BytesIO(data), "p")})
        assert response.status_code == status and message in response.get_json()["message"], data[:10]
