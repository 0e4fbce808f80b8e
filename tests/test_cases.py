"""The case gallery: rare conditions imported as gallery-only, nearest cases on results, consent, bundles, figures."""
import base64
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.server import tinted_face
from ml.datasets import import_dataset
from ml.learning.cases import leave_one_person_out
from ml.learning.training import train
from ml.photos.faces import FaceOptions, crop_face
from ml.photos.images import decode_image
from ml.serving.predictor import Predictor, load_version
from ml.versions.bundles import export_bundle, import_bundle
from ml.versions.gallery import GALLERY_FILE, CaseGallery
from ml.versions.registry import ModelRegistry
from tests.helpers import (CLASS_COLOURS, SMALL_TRAINING, SYNTHETIC_FACES, Trained, bearer_headers, jpeg_bytes,
                           login, png_bytes, post_photo, synthetic_entries, write_zip)

RARE_COLOUR = (230, 210, 30)            # the rare condition's tint: yellow, far from the others'
RARE_SEEDS = (7001, 7002)
CONSENTED = ("alpha/photo0.png", "alpha/photo1.png", "delta/rare0.png")


def rare_variant(seed=RARE_SEEDS[0]):
    """Return a new photo of one of the rare condition's two: brighter, cut a little, as a JPEG."""
    face = tinted_face(RARE_COLOUR, seed).astype(np.int16) + 12
    return jpeg_bytes(np.ascontiguousarray(np.clip(face, 0, 255).astype(np.uint8)[3:, 2:]), quality=90)


@pytest.fixture(scope="module")
def rare(tmp_path_factory):
    """Train on three conditions of 6 photos and a fourth of 2 (gallery-only), some photos consented; return Trained."""
    root = tmp_path_factory.mktemp("rare")
    entries = synthetic_entries(per_class=6)
    entries |= {f"delta/rare{i}.png": png_bytes(tinted_face(RARE_COLOUR, seed)) for i, seed in enumerate(RARE_SEEDS)}
    rows = ["file,subject,display_consent"] + [
        f"{name},{name.split('/')[0]}-{i % 3},{'yes' if name in CONSENTED else 'no'}"
        for i, name in enumerate(sorted(entries))]
    entries["subjects.csv"] = "\n".join(rows).encode()
    dataset = import_dataset(write_zip(root / "rare.zip", entries), "rare", root / "datasets", face=SYNTHETIC_FACES)
    registry = ModelRegistry(root / "models")
    return Trained(registry=registry, version=train(dataset, SMALL_TRAINING, registry), dataset=dataset)


def test_a_condition_with_two_photos_is_imported_as_gallery_only_and_never_in_the_probabilities(rare):
    manifest = rare.dataset.manifest
    assert manifest.gallery_only == ["delta"] and manifest.counts["delta"] == 2
    card = rare.version.card
    assert card.labels == ["alpha", "beta", "gamma"]             # the classifier learns the frequent ones only
    assert card.gallery["gallery_only"] == ["delta"] and card.gallery["cases"] == 20
    assert card.gallery["conditions"]["delta"] == 2 and card.gallery["thumbnails"] == len(CONSENTED)
    assert "own features" in card.gallery["space"]               # a VGG16 version has no face descriptor
    figures = card.metrics.cases
    assert figures["per_condition"]["delta"]["gallery_only"] and figures["rare"]["n"] == 2
    assert figures["frequent"]["n"] == 18 and figures["evaluation"] == "leave-one-person-out"
    assert "classifier_top1" not in figures["per_condition"]["delta"]
    assert 0 <= figures["per_condition"]["alpha"]["classifier_top1"] <= 1
    evaluated = json.loads((rare.version.path / "evaluation.json").read_text())
    assert sorted(row["image"] for row in evaluated) == rare.dataset.classifier_rows().tolist()   # in the dataset


def test_a_variant_of_a_rare_photo_is_matched_to_its_condition(rare):
    rare.registry.activate(rare.version.version)
    prediction = Predictor(rare.registry, batch_window_ms=0).predict(rare_variant())
    nearest = prediction.nearest_cases
    assert len(nearest) == rare.version.card.gallery["k"] == SMALL_TRAINING.nearest_cases
    assert nearest[0].label == "delta" and nearest[0].gallery_only
    assert [case.similarity for case in nearest] == sorted((case.similarity for case in nearest), reverse=True)
    assert "delta" not in dict(prediction.probabilities)
    assert ("Resembles the 2 validated cases of delta: consider delta; too few photos to estimate its accuracy."
            in prediction.cases_summary)
    assert prediction.cases_summary[0].startswith("The 5 closest validated cases were ")
    body = prediction.as_dict()
    assert body["nearest_cases"][0]["label"] == "delta" and body["nearest_cases_summary"] == prediction.cases_summary


def test_a_frequent_face_names_no_rare_condition(rare):
    rare.registry.activate(rare.version.version)
    prediction = Predictor(rare.registry, batch_window_ms=0).predict(png_bytes(tinted_face(CLASS_COLOURS["beta"], 55)))
    assert prediction.nearest_cases[0].label == "beta"
    assert not any("consider" in sentence for sentence in prediction.cases_summary)


def test_the_gallery_keeps_thumbnails_of_consented_photos_only(rare):
    gallery = CaseGallery.load(rare.version.path)
    images = rare.dataset.manifest.images
    consented = [i for i, item in enumerate(images) if item.get("display_consent")]
    assert sorted(images[i]["original"] for i in consented) == sorted(CONSENTED)
    assert sorted(gallery.thumbnail_cases.tolist()) == consented and len(gallery.thumbnails) == len(CONSENTED)
    assert all(gallery.thumbnail(i) is None for i in range(len(images)) if i not in consented)
    assert gallery.thumbnail(consented[0]).shape == (64, 64, 3)


def test_the_gallery_survives_a_bundle_with_identical_nearest_cases(rare, tmp_path):
    stream = io.BytesIO()
    export_bundle(rare.version, stream)
    site = ModelRegistry(tmp_path / "site")
    moved = import_bundle(io.BytesIO(stream.getvalue()), site)
    assert GALLERY_FILE in moved.card.files and moved.card.gallery == rare.version.card.gallery
    assert (moved.path / GALLERY_FILE).read_bytes() == (rare.version.path / GALLERY_FILE).read_bytes()
    face = FaceOptions(**rare.version.card.face)
    crops = np.stack([crop_face(decode_image(rare_variant(seed)), face).image for seed in RARE_SEEDS])
    here, there = load_version(rare.version), load_version(moved)
    assert here.assess(crops)[2] == there.assess(crops)[2]


def test_thumbnails_reach_staff_inside_the_answer_only_where_consent_was_declared(app, client, tokens, rare):
    from web.services import get_registry

    with app.app_context():
        registry = get_registry()
        shutil.copytree(rare.version.path, registry.root / rare.version.version)
        registry.activate(rare.version.version)
    version = rare.version.version
    images = rare.dataset.manifest.images
    shown = next(i for i, item in enumerate(images) if item.get("display_consent"))
    # No address of its own: an access log would say which cases were near a patient's face.
    login(client, "dan")
    for path in (f"/cases/{version}/{shown}.png", f"/api/v1/models/{version}/cases/{shown}.png"):
        assert client.get(path, headers=bearer_headers(tokens["doctor"])).status_code == 404
    client.get("/logout")

    doctor = bearer_headers(tokens["doctor"])
    predicted = client.post("/api/v1/predict", headers=doctor, data={"image": (io.BytesIO(rare_variant()), "p.jpg")},
                            content_type="multipart/form-data").get_json()
    cases = predicted["nearest_cases"]
    assert cases[0]["label"] == "delta"
    assert any("thumbnail_png_base64" in case for case in cases)
    for case in cases:
        assert "thumbnail_url" not in case
        assert ("thumbnail_png_base64" in case) == bool(images[case["case"]].get("display_consent"))
        if "thumbnail_png_base64" in case:
            thumbnail = Image.open(io.BytesIO(base64.b64decode(case["thumbnail_png_base64"])))
            assert thumbnail.size == (64, 64)

    login(client, "dan")
    page = post_photo(client, rare_variant(), "p.jpg").get_data(as_text=True)
    assert 'id="nearest-cases"' in page and "consider delta" in page
    rows = re.findall(r"<tr><td data-label=\"Case\">(.*?)</tr>", page, re.S)
    assert len(rows) == len(cases)
    for case, row in zip(cases, rows):          # the page lists the cases the API does, in the same order
        assert ('src="data:image/png;base64,' in row) == ("thumbnail_png_base64" in case)
        assert f"Validated case {case['case']} " in row or "no photo" in row
    assert f"/cases/{version}/" not in page


def test_the_model_page_shows_matching_beside_the_classifier(app, client, tokens, rare):
    from web.services import get_registry

    with app.app_context():
        shutil.copytree(rare.version.path, get_registry().root / rare.version.version)
    login(client, "ada")
    page = client.get(f"/admin/models/{rare.version.version}").get_data(as_text=True)
    assert 'id="case-figures"' in page and "Gallery-only conditions" in page and "delta" in page
    assert "when the classifier abstains" in page and "leave-one-person-out" in page


def test_the_dataset_page_marks_a_gallery_only_condition(app, client, tokens, rare):
    from web.services import datasets_root

    with app.app_context():
        shutil.copytree(rare.dataset.path, Path(datasets_root()) / "rare")
    login(client, "ada")
    page = client.get("/admin/datasets/rare").get_data(as_text=True)
    counts = re.search(r'<table id="counts">.*?</table>', page, re.S).group(0)
    rows = dict(re.findall(r"<tr><td>(\w+)(.*?)</tr>", counts, re.S))
    assert "gallery only" in rows["delta"] and all("gallery only" not in rows[c] for c in ("alpha", "beta", "gamma"))


def test_matching_leaves_each_person_out():
    # Two photos of one person with condition 0, one of another with condition 0, one of condition 1.
    unit = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.8, 0.6]], np.float32)
    labels = np.array([0, 0, 0, 1])
    sweep = leave_one_person_out(unit, labels, ["p", "p", "q", "r"], 2, k=1)
    # Photo 0 may not match photo 1 (the same person): the nearest case left is condition 1's (0.8 > 0).
    assert sweep.rank.tolist() == [1, 1, 1, 2]           # 2: no case of condition 1 is left for photo 3
    assert np.allclose(sweep.within[:3], [0.0, 0.0, 0.0]) and np.isnan(sweep.within[3])
    assert sweep.among_nearest.tolist() == [False, False, False, False]
    by_photo = leave_one_person_out(unit, labels, None, 2, k=1)
    assert by_photo.rank.tolist()[:2] == [0, 0] and by_photo.among_nearest[:2].all()


def test_how_unusual_a_similarity_is_is_read_against_the_conditions_own_cases():
    angles = np.radians([0, 10, 20, 90, 100])
    vectors = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    gallery = CaseGallery(labels=["a", "b"], case_labels=[0, 0, 0, 1, 1], vectors=vectors, mean=[0, 0],
                          scale=[1, 1], columns=(0, 2), within=np.cos(np.radians([10, 10, 10, 10, 10])),
                          persons=["1", "2", "3", "4", "5"], gallery_only=[False, True], thumbnails=np.zeros(0),
                          thumbnail_cases=[])
    near, far = gallery.nearest(np.array([[1.0, 0.02], [np.cos(1.2), np.sin(1.2)]]), 2)
    assert [case.case for case in near] == [0, 1] and not near[0].unusual and near[0].typicality == 1.0
    assert far[0].label == "b" and far[0].unusual and far[0].gallery_only and far[0].typicality == 0.0
