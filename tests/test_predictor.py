import io
import json
import shutil
import threading
import zipfile

import numpy as np
import pytest
from PIL import Image

from ml.errors import FaceDxError, ImageError, NoActiveModel, NoFaceFound
from ml.serving.predictor import UNLIKE_TRAINING, Predictor
from ml.versions.registry import ModelRegistry
from tests.helpers import clone_version, coloured_face, coloured_noise, face_haar_misses, legacy_version, png_bytes


@pytest.fixture
def registry(tmp_path, trained):
    """A registry of its own holding copies of the trained version, so tests may change it."""
    version = trained.version
    registry = ModelRegistry(tmp_path / "models")
    shutil.copytree(version.path, registry.root / version.version)
    return registry


def test_prediction_ranks_every_class_and_sums_to_one(registry, trained):
    version = trained.version.version
    registry.activate(version)
    result = Predictor(registry).predict(png_bytes(face_haar_misses("beta")))             # used whole
    assert result.model_version == version
    assert [label for label, _ in result.probabilities][0] == "beta"
    assert sorted(label for label, _ in result.probabilities) == ["alpha", "beta", "gamma"]
    probabilities = [p for _, p in result.probabilities]
    assert probabilities == sorted(probabilities, reverse=True)
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
    body = result.as_dict()
    assert body["face"] == {"x": 0, "y": 0, "width": 96, "height": 96} and body["face_source"] == "whole-image"


def test_serving_uses_exactly_the_training_preprocessing(registry, trained):
    version, dataset = trained.version, trained.dataset
    registry.activate(version.version)
    predictor = Predictor(registry)
    crops, _, _, _ = dataset.load_crops()
    expected = predictor.current().probabilities(crops[:5])        # the stored training crops
    with zipfile.ZipFile(dataset.path.parent.parent / "synthetic.zip") as archive:
        originals = [archive.read(item["original"]) for item in dataset.manifest.images[:5]]
    for data, row in zip(originals, expected):                      # the original uploads, served
        served = dict(predictor.predict(data).probabilities)
        np.testing.assert_allclose([served[label] for label in dataset.labels], row, atol=1e-6)


def test_no_active_model_is_reported(registry):
    with pytest.raises(NoActiveModel, match="No model is active"):
        Predictor(registry).current()


def test_bad_photos_raise_clear_errors(registry, trained, face_photos):
    registry.activate(trained.version.version)
    predictor = Predictor(registry)
    with pytest.raises(ImageError):
        predictor.predict(b"%PDF-1.4 not a photo")
    strict = clone_version(registry, trained.version.version)
    card_path = registry.get(strict).path / "card.json"
    strict_face = {"face": {"detector": "mtcnn", "fallback": "none"}}
    card_path.write_text(json.dumps(registry.get(strict).card.to_dict() | strict_face))
    registry.activate(strict)
    with pytest.raises(NoFaceFound):
        predictor.predict(png_bytes(coloured_noise("alpha", seed=5, size=120)))
    assert predictor.predict(png_bytes(face_photos["astronaut"])).face_source == "detected"


def test_activation_is_noticed_without_failing_calls_in_flight(registry, trained):
    first = trained.version.version
    second = clone_version(registry, first)
    registry.activate(first)
    predictor = Predictor(registry)
    photo = png_bytes(coloured_face("gamma", seed=8))
    errors, served = [], set()

    def doctor():
        for _ in range(15):
            try:
                served.add(predictor.predict(photo).model_version)
            except Exception as exc:          # any failure at all is what this test looks for
                errors.append(exc)

    threads = [threading.Thread(target=doctor) for _ in range(4)]
    for thread in threads:
        thread.start()
    registry.activate(second)
    for thread in threads:
        thread.join()
    assert errors == []
    assert predictor.current().version == second
    assert served <= {first, second}


def test_a_broken_new_version_keeps_the_old_one_serving(registry, trained):
    first = trained.version.version
    second = clone_version(registry, first)
    registry.activate(first)
    predictor = Predictor(registry)
    assert predictor.current().version == first
    (registry.get(second).path / "backbone.keras").write_bytes(b"truncated")
    registry.activate(second)
    assert predictor.current().version == first
    assert predictor.predict(png_bytes(coloured_face("alpha", seed=9))).model_version == first


def tiff_of_nan():
    buffer = io.BytesIO()
    Image.fromarray(np.full((120, 120), np.nan, np.float32), mode="F").save(buffer, format="TIFF")
    return buffer.getvalue()


@pytest.mark.parametrize("photo, error, words", [
    (lambda: png_bytes(np.zeros((1, 1, 3), np.uint8)), NoFaceFound, "too small"),
    (lambda: png_bytes(np.zeros((8, 8, 3), np.uint8)), NoFaceFound, "too small"),
    (lambda: png_bytes(np.full((200, 200, 3), 127, np.uint8)), NoFaceFound, "blank"),
    (lambda: png_bytes(np.zeros((300, 200, 3), np.uint8)), NoFaceFound, "blank"),
    (tiff_of_nan, ImageError, "not numbers"),
])
def test_a_whole_image_model_refuses_what_cannot_be_a_face(registry, trained, photo, error, words):
    registry.activate(trained.version.version)
    assert registry.get(trained.version.version).card.face["fallback"] == "whole"
    with pytest.raises(error, match=words):
        Predictor(registry).predict(photo())


def test_a_photo_unlike_the_training_photos_is_referred(registry, trained, face_photos):
    registry.activate(trained.version.version)
    predictor = Predictor(registry)
    grey = np.clip(np.random.default_rng(0).normal(127, 30, (64, 64, 3)), 0, 255).astype(np.uint8)
    with pytest.raises(NoFaceFound, match="No face found in this photo"):
        predictor.predict(png_bytes(grey))                      # no face: the gate refuses it before any model
    stranger = predictor.predict(png_bytes(face_photos["grace_hopper"]))    # trained on tinted faces only
    assert stranger.abstained and stranger.abstention_reasons[0] == UNLIKE_TRAINING
    usual = [predictor.predict(png_bytes(coloured_face(label, seed=900 + i)))
             for i, label in enumerate(["alpha", "beta", "gamma"] * 4)]
    assert sum(UNLIKE_TRAINING in p.abstention_reasons for p in usual) <= 1


def test_a_version_written_before_blocks_and_card_formats_still_serves(tmp_path, trained_people, face_photos):
    """An old card (no format, no pipeline) with a pickled scikit-learn head loads and predicts as it did."""
    registry = ModelRegistry(tmp_path / "models")
    version, expected_for = legacy_version(registry, trained_people.version, face_photos)
    assert version.card.format == 1 and version.card.pipeline is None and "head.joblib" in version.card.files
    registry.activate(version.version)
    result = Predictor(registry).predict(png_bytes(face_photos["grace_hopper"]))
    expected = expected_for("grace_hopper")
    served = dict(result.probabilities)
    np.testing.assert_allclose([served["first"], served["second"]], expected, atol=1e-6)


def test_the_explanation_of_a_prediction_is_the_explanation_of_its_crop(registry, trained):
    from ml.serving.explain import Explanation

    registry.activate(trained.version.version)
    predictor = Predictor(registry)
    result = predictor.predict(png_bytes(coloured_face("alpha", seed=31)), explain=True)
    assert isinstance(result.explanation, Explanation) and result.explanation.method == "grad-cam"
    later = predictor.explain_crop(result.crop)            # what the page asks for after showing the result
    np.testing.assert_allclose(later.heatmap, result.explanation.heatmap, atol=1e-5)
    assert later.heatmap.dtype == np.float32 and later.heatmap.shape == result.crop.shape[:2]
    assert later.overlay_png.startswith(b"\x89PNG") and later.seconds > 0
    other = predictor.explain_crop(result.crop, class_index=2)
    assert not np.allclose(other.heatmap, later.heatmap)
    body = result.as_dict()["explanation"]
    assert body["method"] == "grad-cam" and body["heatmap_png_base64"] and body["seconds"] >= 0


@pytest.mark.parametrize("crop, class_index, error, words", [
    (np.zeros((100, 100, 3), np.uint8), None, ImageError, "must be a 256 x 256 RGB image; this one is 100 x 100 x 3"),
    (np.zeros((256, 256, 3), np.float32), None, ImageError, "float32"),
    (np.zeros((256, 256, 3), np.uint8), 3, FaceDxError, "3 conditions; there is no condition number 3"),
    (np.zeros((256, 256, 3), np.uint8), -1, FaceDxError, "no condition number -1"),
])
def test_explaining_a_crop_checks_it(registry, trained, crop, class_index, error, words):
    registry.activate(trained.version.version)
    with pytest.raises(error, match=words):
        Predictor(registry).explain_crop(crop, class_index)


def test_a_prediction_carries_retake_advice_and_the_faces_found(registry, trained, face_photos):
    registry.activate(trained.version.version)
    predictor = Predictor(registry)
    small = predictor.predict(png_bytes(face_haar_misses("beta", size=48)))      # used whole: 48 px
    assert small.faces_found == 0
    assert small.advice == ["The face is only 48 px wide; move closer or use a higher-resolution photo "
                            "(at least 80 px across the face)."]
    assert small.abstained and small.abstention_reasons[0].startswith("the photo must be taken again")
    assert small.as_dict()["advice"] == small.advice and small.as_dict()["faces_found"] == 0
    good = predictor.predict(png_bytes(face_photos["grace_hopper"]))
    assert good.advice == [] and good.faces_found == 1 and good.as_dict()["face"] == good.face.as_dict()


def test_a_nearly_black_photo_is_refused_before_it_is_analysed(registry, trained):
    from ml.photos.quality import UnusablePhoto

    registry.activate(trained.version.version)
    black = np.repeat(np.tile(np.linspace(0, 18, 120), (120, 1))[..., np.newaxis], 3, axis=2).astype(np.uint8)
    with pytest.raises(UnusablePhoto, match="nearly black"):
        Predictor(registry).predict(png_bytes(black))


def test_with_several_faces_the_prediction_says_how_many_and_which_was_analysed(registry, trained, face_photos):
    import cv2

    registry.activate(trained.version.version)
    big = cv2.resize(face_photos["grace_hopper"], (400, 400))
    small = cv2.resize(face_photos["astronaut"], (250, 250))
    canvas = np.full((400, 650, 3), 255, np.uint8)
    canvas[:, 250:] = big
    canvas[75:325, :250] = small
    result = Predictor(registry).predict(png_bytes(canvas))
    assert result.faces_found == 2 and result.as_dict()["faces_found"] == 2
    assert result.face_source == "detected" and result.face.x >= 250      # the larger face, on the right
