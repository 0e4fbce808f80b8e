import hashlib
import io
import json
import zipfile

import numpy as np
import pytest

from ml.errors import BundleError, VersionExists
from ml.serving.predictor import Predictor
from ml.versions.bundles import export_bundle, import_bundle
from ml.versions.registry import ModelRegistry
from tests.helpers import bearer_headers, legacy_version, png_bytes


def bundle_of(version, key=None):
    stream = io.BytesIO()
    export_bundle(version, stream, key)
    return stream.getvalue()


def entries_of(bundle):
    with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rebundle(bundle, changes=(), manifest_too=True, drop=()):
    """Return a bundle with some entries replaced or added; the manifest follows them unless told not to."""
    entries = {name: data for name, data in entries_of(bundle).items() if name not in drop} | dict(changes)
    if manifest_too:
        manifest = json.loads(entries["manifest.json"])
        for name, data in dict(changes).items():
            if name not in ("manifest.json", "manifest.sig"):
                manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        entries["manifest.json"] = json.dumps(manifest).encode()
    stream = io.BytesIO()
    with zipfile.ZipFile(stream, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return stream.getvalue()


def served(registry, version, photo):
    registry.activate(version)
    return dict(Predictor(registry, batch_window_ms=0).predict(png_bytes(photo)).probabilities)


@pytest.mark.parametrize("fixture", ["trained_people", "trained"])
def test_a_bundle_moves_a_version_with_the_same_probabilities(request, tmp_path, face_photos, fixture):
    source = request.getfixturevalue(fixture)
    source_registry, version = source.registry, source.version
    bundle = bundle_of(version)
    entries = entries_of(bundle)
    manifest = json.loads(entries["manifest.json"])
    assert set(manifest["files"]) == set(version.card.files) | {"card.json"}
    assert manifest["dataset_checksum"] == version.card.dataset["checksum"] and manifest["software"]["keras"]
    assert all(hashlib.sha256(entries[name]).hexdigest() == row["sha256"] for name, row in manifest["files"].items())
    assert "file" not in json.dumps(json.loads(entries["evaluation.json"]))          # no photo names travel

    site = ModelRegistry(tmp_path / "other-site")
    imported = import_bundle(io.BytesIO(bundle), site, origin="test")
    assert imported.version == version.version and imported.card.created == version.card.created
    assert imported.card.imported["from"] == "test" and site.pointer() == {}          # never active by itself
    here = served(source_registry, version.version, face_photos["astronaut"])
    there = served(site, imported.version, face_photos["astronaut"])
    assert here.keys() == there.keys()
    np.testing.assert_allclose([there[k] for k in here], [here[k] for k in here], atol=1e-6)
    with pytest.raises(VersionExists):
        import_bundle(io.BytesIO(bundle), site)


def test_a_pickled_head_is_converted_to_arrays_on_export(tmp_path, trained_people, face_photos):
    registry = ModelRegistry(tmp_path / "old-site")
    version, expected = legacy_version(registry, trained_people.version, face_photos)
    entries = entries_of(bundle_of(version))
    assert "head.joblib" not in entries and "head.npz" in entries
    site = ModelRegistry(tmp_path / "new-site")
    imported = import_bundle(io.BytesIO(bundle_of(version)), site)
    assert "head.joblib" not in imported.card.files and "converted to head.npz" in imported.card.conversions[0]
    there = served(site, imported.version, face_photos["grace_hopper"])
    np.testing.assert_allclose([there["first"], there["second"]], expected("grace_hopper"), atol=1e-6)


def pickle_bytes():
    import pickle

    return pickle.dumps({"harmless": "but a pickle"})


def object_npz():
    stream = io.BytesIO()
    np.savez(stream, coef=np.array([{"a": 1}], dtype=object))
    return stream.getvalue()


def huge_npz(shape=(400_000_000,)):
    """An .npz whose header announces 3 GiB of float64 zeros; only the header is there (the rest never is read)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": shape})
    stream = io.BytesIO()
    with zipfile.ZipFile(stream, "w", zipfile.ZIP_DEFLATED) as arrays:
        arrays.writestr("coef.npy", header.getvalue() + b"\0" * 4096)
    return stream.getvalue()


@pytest.mark.parametrize("make, reason", [
    (lambda b: rebundle(b, {"head.npz": huge_npz()}), "more than 512 MiB .*coef is 400000000 float64"),
    (lambda b: rebundle(b, {"novelty.npz": huge_npz((70_000, 1_000))}), "more than 512 MiB"),
    (lambda b: rebundle(b, {"head.npz": b"changed after export"}, manifest_too=False), "does not match its manifest"),
    (lambda b: rebundle(b, {"head.joblib": pickle_bytes()}), "pickle"),
    (lambda b: rebundle(b, {"head.npz": pickle_bytes()}), "pickle"),
    (lambda b: rebundle(b, {"head.npz": object_npz()}), "not a plain array file"),
    (lambda b: rebundle(b, {"../../evil.json": b"{}"}), "not a file of a model version"),
    (lambda b: rebundle(b, {"extra/head.npz": b"x"}), "not a file of a model version"),
    (lambda b: rebundle(b, {"card.json": json.dumps(json.loads(entries_of(b)["card.json"]) | {"format": 9})
                            .encode()}), "format 9, newer"),
    (lambda b: rebundle(b, {"card.json": json.dumps(json.loads(entries_of(b)["card.json"]) | {
        "pipeline": {"name": "retina", "blocks": ["retina"], "head": "linear"}}).encode()}), "does not know"),
    (lambda b: rebundle(b, {"manifest.json": b'{"bundle_format": 7}'}, manifest_too=False), "format 7"),
    (lambda b: rebundle(b, drop=("manifest.json",), manifest_too=False), "no manifest"),
    (lambda b: rebundle(b, drop=("novelty.npz",), manifest_too=False), "missing: novelty.npz"),
    (lambda b: rebundle(b, {"card.json": json.dumps(json.loads(entries_of(b)["card.json"]) | {"created": 12345})
                            .encode()}), "created is not a str"),
    (lambda b: b"not a zip at all", "not a readable zip"),
])
def test_hostile_bundles_are_refused_with_their_reason_and_write_nothing(tmp_path, trained_people, make, reason):
    bundle = make(bundle_of(trained_people.version))
    site = ModelRegistry(tmp_path / "site")
    with pytest.raises(BundleError, match=reason):
        import_bundle(io.BytesIO(bundle), site)
    assert not (tmp_path / "site").exists() or list((tmp_path / "site").iterdir()) == []


def test_a_version_that_cannot_run_here_is_refused(tmp_path, trained, monkeypatch):
    import ml.versions.bundles

    here = ml.versions.bundles._software()
    monkeypatch.setattr(ml.versions.bundles, "_software", lambda: here | {"keras": "99.0.0"})
    with pytest.raises(BundleError, match="keras .* different major version"):
        import_bundle(io.BytesIO(bundle_of(trained.version)), ModelRegistry(tmp_path / "site"))
    assert not (tmp_path / "site").exists() or list((tmp_path / "site").iterdir()) == []


def test_with_a_key_only_bundles_signed_with_it_are_imported(tmp_path, trained_people):
    version = trained_people.version
    signed = bundle_of(version, key="site key")
    site = ModelRegistry(tmp_path / "site")
    with pytest.raises(BundleError, match="not signed"):
        import_bundle(io.BytesIO(bundle_of(version)), site, key="site key")
    with pytest.raises(BundleError, match="signature does not match"):
        import_bundle(io.BytesIO(signed), site, key="another key")
    manifest = json.loads(entries_of(signed)["manifest.json"]) | {"exported": "2001-01-01T00:00:00+00:00"}
    with pytest.raises(BundleError, match="signature does not match"):
        import_bundle(io.BytesIO(rebundle(signed, {"manifest.json": json.dumps(manifest).encode()},
                                          manifest_too=False)), site, key="site key")
    assert import_bundle(io.BytesIO(signed), site, key="site key").card.imported["signed"] is True


def test_export_and_import_through_the_api_the_pages_and_the_command_line(app, client, tokens, runner, tmp_path,
                                                                          active_model, monkeypatch):
    from flask_migrate import upgrade

    from app import create_app
    from tests.helpers import login, make_user

    admin = bearer_headers(tokens["admin"])
    assert client.get(f"/api/v1/models/{active_model}/bundle", headers=bearer_headers(tokens["doctor"])) \
        .status_code == 403
    download = client.get(f"/api/v1/models/{active_model}/bundle", headers=admin)
    assert download.status_code == 200 and download.mimetype == "application/zip"
    assert f"facedx-model-{active_model}.zip" in download.headers["Content-Disposition"]
    exported = runner.invoke(args=["models", "export", active_model, str(tmp_path / "cli.zip")])
    assert exported.exit_code == 0, exported.output
    assert entries_of((tmp_path / "cli.zip").read_bytes()).keys() == entries_of(download.data).keys()

    monkeypatch.setenv("FACEDX_DATA_DIR", str(tmp_path / "second-site"))
    second = create_app({"TESTING": True})
    with second.app_context():
        upgrade()
    token = bearer_headers(make_user(second, "root", "admin"))
    other = second.test_client()
    refused = other.post("/api/v1/models", headers=token, content_type="multipart/form-data",
                         data={"bundle": (io.BytesIO(b"PK not really"), "model.zip")})
    assert refused.status_code == 422 and "zip" in refused.get_json()["message"]
    created = other.post("/api/v1/models", headers=token, content_type="multipart/form-data",
                         data={"bundle": (io.BytesIO(download.data), "model.zip")})
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["version"] == active_model and created.get_json()["active"] is False
    again = other.post("/api/v1/models", headers=token, content_type="multipart/form-data",
                       data={"bundle": (io.BytesIO(download.data), "model.zip")})
    assert again.status_code == 409
    assert second.test_cli_runner().invoke(args=["models", "import", str(tmp_path / "cli.zip")]).exit_code == 1

    page = login(other, "root").get(f"/admin/models/{active_model}").get_data(as_text=True)
    assert 'id="imported"' in page and "Download bundle" in page
    audit = other.get("/admin/audit").get_data(as_text=True)
    assert "model.import" in audit
