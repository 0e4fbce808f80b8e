"""Refusing well: no diagnosis without a face, and none beside "take the photo again", under every kind of model."""
import shutil

import cv2
import numpy as np
import pytest

from bench.non_faces import non_faces
from ml.errors import NoFaceFound
from ml.serving.predictor import RETAKE, Predictor
from ml.versions.registry import ModelRegistry
from tests.helpers import png_bytes

NON_FACES = non_faces()


def serving(tmp_path, trained_model):
    """Return a Predictor serving a copy of a trained version."""
    version = trained_model.version
    registry = ModelRegistry(tmp_path / "models")
    shutil.copytree(version.path, registry.root / version.version)
    registry.activate(version.version)
    return Predictor(registry, batch_window_ms=0)


@pytest.fixture(params=["whole-photo VGG16", "detected dlib-face", "detected hog+lbp+geometry"])
def predictor(request, tmp_path):
    """A predictor for each kind of model: faces used whole, faces detected (descriptor only, or texture and shape)."""
    fixture = {"whole-photo VGG16": "trained", "detected dlib-face": "trained_people",
               "detected hog+lbp+geometry": "trained_people_texture"}[request.param]
    return serving(tmp_path, request.getfixturevalue(fixture))


def test_no_picture_of_the_non_face_gallery_gets_a_diagnosis(predictor):
    answered = {}
    for name, picture in NON_FACES.items():
        try:
            answered[name] = predictor.predict(png_bytes(picture)).probabilities[0]
        except NoFaceFound as refused:
            assert "no face" in str(refused).lower(), (name, str(refused))
    assert answered == {}


@pytest.fixture(scope="module")
def portrait(face_photos):
    """Grace Hopper's face with a margin around it (256 px): a face every kind of model takes, detected or whole."""
    from ml.photos.faces import crop_face

    return crop_face(face_photos["grace_hopper"]).image


def test_a_blurred_face_is_referred_with_the_retake_advice_first(predictor, portrait):
    blurred = cv2.GaussianBlur(portrait, (0, 0), 0.03 * portrait.shape[1])
    result = predictor.predict(png_bytes(blurred))
    assert result.advice and result.abstained
    assert result.abstention_reasons[0] == RETAKE + "the face is blurred; hold the camera still, let it focus on " \
                                                    "the face, and take the photo again."
    assert result.as_dict()["decision"].startswith("uncertain")


def test_a_dark_face_is_referred_and_a_good_one_is_not_for_its_quality(predictor, portrait):
    dark = predictor.predict(png_bytes((portrait * 0.3).astype(np.uint8)))
    assert dark.abstained and dark.abstention_reasons[0].startswith(RETAKE + "the face is too dark")
    good = predictor.predict(png_bytes(portrait))
    assert good.advice == [] and not any(reason.startswith(RETAKE) for reason in good.abstention_reasons)
