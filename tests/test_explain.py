from types import SimpleNamespace

import keras
import numpy as np
import pytest

from ml.backbones.vgg import VGGBackbone
from ml.explain import explain, grad_cam, occlusion_map, overlay_png
from ml.faces import CROP_SIZE
from ml.heads import LinearHead
from ml.pipelines import Config


PATCH = 64


def patch_image(label, seed):
    """A noisy grey face-sized square; class 1 has a yellow patch somewhere, which is the class signal."""
    rng = np.random.default_rng(seed)
    crop = np.clip(rng.normal(110, 20, (CROP_SIZE, CROP_SIZE, 3)), 0, 255).astype(np.uint8)
    y, x = rng.integers(10, CROP_SIZE - PATCH - 10, size=2)
    if label:
        crop[y:y + PATCH, x:x + PATCH] = (250, 220, 40)
    return crop, (y, x)


@pytest.fixture(scope="module")
def patch_model():
    """A random VGG16 at 224 px with a linear head trained to tell photos with a patch from those without."""
    labels = np.arange(40) % 2
    crops = np.stack([patch_image(label, seed)[0] for seed, label in enumerate(labels)])
    keras.utils.set_random_seed(0)                       # the same random network on every run
    backbone = VGGBackbone.build("vgg16-imagenet", "none", 224, ())
    head = LinearHead.fit(backbone.features(crops), labels, backbone.block_sizes,
                          Config(("vgg16-imagenet",), "linear", 1.0), 2)
    return SimpleNamespace(backbone=backbone, head=head, card={},
                           probabilities=lambda batch, reference=None: head.probabilities(backbone.features(batch)))


def inside_and_outside(heat, place):
    y, x = place
    inside = np.zeros(heat.shape, bool)
    inside[y:y + PATCH, x:x + PATCH] = True
    return heat[inside].mean(), heat[~inside].mean()


@pytest.mark.parametrize("seed", [1000, 1001, 1002])
def test_grad_cam_points_at_the_patch(patch_model, seed):
    crop, place = patch_image(1, seed)
    heat = grad_cam(patch_model.backbone, patch_model.head, crop, 1)
    assert heat.shape == (CROP_SIZE, CROP_SIZE) and heat.max() == pytest.approx(1.0)
    inside, outside = inside_and_outside(heat, place)
    assert inside > 1.5 * outside


@pytest.mark.parametrize("seed", [2000, 2001])
def test_occlusion_points_at_the_patch(patch_model, seed):
    crop, place = patch_image(1, seed)
    heat = occlusion_map(crop, patch_model.probabilities, 1)
    inside, outside = inside_and_outside(heat, place)
    assert inside > 1.5 * outside


def test_the_explanation_method_follows_the_backbone(patch_model, trained_people, face_photos):
    from ml.faces import FaceOptions, crop_face
    from ml.predictor import load_version

    assert explain(patch_model, patch_image(0, 5)[0], 0)[1] == "grad-cam"
    loaded = load_version(trained_people[1])
    crop = crop_face(face_photos["astronaut"], FaceOptions("mtcnn")).image
    heat, method = explain(loaded, crop, 0)
    assert method == "occlusion" and heat.shape == crop.shape[:2] and heat.max() == pytest.approx(1.0)
    png = overlay_png(crop, heat)
    assert png.startswith(b"\x89PNG")
