from types import SimpleNamespace

import keras
import numpy as np
import pytest

from ml.features.extractor import FaceFeatures
from ml.features.face_models import face_landmarks
from ml.features.hog import HOG_BLOCK, HOG_SIZE, HOG_STRIDE, hog_blocks, hog_descriptor
from ml.features.located import window_density
from ml.features.vgg import VGGBackbone
from ml.learning.heads import LinearHead
from ml.learning.pipelines import Candidate
from ml.photos.faces import CROP_SIZE, FaceOptions, crop_face
from ml.photos.images import decode_image
from ml.serving.explain import (
    FADE_IN,
    SHOWN_FROM,
    chip_occlusion_map,
    crop_occlusion_map,
    explain,
    explanation,
    grad_cam,
)

PATCH = 64
MASKED = 1


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
                          Candidate(("vgg16-imagenet",), "linear", 1.0), 2)
    return SimpleNamespace(backbone=backbone, head=head, card={},
                           probabilities=lambda batch, reference=None, calibrated=True:
                           head.probabilities(backbone.features(batch)))


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
def test_occlusion_of_the_crop_points_at_the_patch(patch_model, seed):
    crop, place = patch_image(1, seed)
    heat = crop_occlusion_map(patch_model, crop, 1, grid=6)
    inside, outside = inside_and_outside(heat, place)
    assert inside > 1.5 * outside


def eye_box(crop, margin=6):
    """Return the box (x0, y0, x1, y1) around both eyes of the face in a crop, from its 68 landmarks."""
    eyes = face_landmarks(crop)[36:48]
    (x0, y0), (x1, y1) = eyes.min(axis=0) - margin, eyes.max(axis=0) + margin
    return int(x0), int(y0), int(x1), int(y1)


def eyes_masked(crop):
    x0, y0, x1, y1 = eye_box(crop)
    masked = crop.copy()
    masked[y0:y1, x0:x1] = 0
    return masked


def variants(crop):
    """Return 8 variants of a face crop: mirrored, shifted, lighter and darker."""
    found = []
    for mirrored in (crop, crop[:, ::-1]):
        for shift in (0, 6):
            for gain in (0.85, 1.1):
                moved = np.roll(mirrored, shift, axis=(0, 1)) * gain
                found.append(np.ascontiguousarray(np.clip(moved, 0, 255).astype(np.uint8)))
    return found


@pytest.fixture(scope="module")
def faces(face_photos):
    """The face crops of the two real photos, as a prediction cuts them."""
    return {name: crop_face(photo, FaceOptions("mtcnn")).image for name, photo in face_photos.items()}


def masked_eyes(faces, blocks):
    """A face-block model that tells faces with blacked-out eyes from others."""
    plain = [variant for crop in faces.values() for variant in variants(crop)]
    crops = plain + [eyes_masked(crop) for crop in plain]
    labels = np.array([0] * len(plain) + [MASKED] * len(plain))
    extractor = FaceFeatures(blocks)
    head = LinearHead.fit(extractor.features(np.stack(crops)), labels, extractor.block_sizes,
                          Candidate(tuple(blocks), "linear", 1.0), 2)
    return SimpleNamespace(backbone=extractor, head=head)


@pytest.fixture(scope="module")
def masked_eyes_model(faces):
    """A HOG model (its map: attribution) that tells faces with blacked-out eyes from others."""
    return masked_eyes(faces, ["hog"])


def peak_in_eyes(heat, crop):
    x0, y0, x1, y1 = eye_box(crop)
    y, x = np.unravel_index(np.argmax(heat), heat.shape)
    return x0 <= x < x1 and y0 <= y < y1


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_the_map_of_a_face_with_its_eyes_masked_peaks_on_the_eyes(masked_eyes_model, faces, name):
    crop = faces[name]
    masked = explanation(masked_eyes_model, eyes_masked(crop), MASKED)
    assert masked.method == "attribution" and peak_in_eyes(masked.heatmap, crop)
    x0, y0, x1, y1 = eye_box(crop)
    inside = np.zeros(crop.shape[:2], bool)
    inside[y0:y1, x0:x1] = True
    assert masked.heatmap[inside].mean() > 5 * masked.heatmap[~inside].mean()
    # The same face with its eyes visible: whatever the map shows for "masked", it does not peak there.
    assert not peak_in_eyes(explanation(masked_eyes_model, crop, MASKED).heatmap, crop)


def test_two_faces_give_different_maps(masked_eyes_model, faces):
    first, second = (explanation(masked_eyes_model, faces[name], 0).heatmap for name in ("astronaut", "grace_hopper"))
    assert np.corrcoef(first.ravel(), second.ravel())[0, 1] < 0.9
    assert np.abs(first - second).mean() > 0.05


def test_occluding_nothing_gives_the_served_features(faces):
    extractor, crop = FaceFeatures(["hog", "lbp", "geometry"]), faces["astronaut"]
    frame = extractor.chip_frame(crop)
    np.testing.assert_array_equal(extractor.occluded_features(frame, [None], 127), extractor.features(crop[np.newaxis]))


def test_a_region_of_the_chip_is_drawn_where_it_lies_in_the_crop(faces):
    extractor, crop = FaceFeatures(["hog"]), faces["grace_hopper"]
    frame = extractor.chip_frame(crop)
    filled = crop.copy()
    filled[frame.box_on_crop((50, 40, 90, 70))] = 0
    # Aligned again exactly as the served features align it, the filled crop shows the region where it was.
    chip = extractor.aligner.align(filled, extractor.aligner.landmarks(crop))
    assert chip[42:68, 52:88].max() == 0
    np.testing.assert_array_equal(chip[:, 100:], frame.chip[:, 100:])


def test_the_overlay_colours_only_the_strongest_regions(masked_eyes_model, faces):
    crop = eyes_masked(faces["astronaut"])
    explained = explanation(masked_eyes_model, crop, MASKED)
    heat = explained.heatmap
    assert heat.dtype == np.float32 and heat.shape == crop.shape[:2] and heat.min() >= 0 and heat.max() == 1
    assert explained.seconds > 0
    overlay = decode_image(explained.overlay_png)
    untinted = heat < SHOWN_FROM
    assert untinted.mean() > 0.5
    np.testing.assert_array_equal(overlay[untinted], crop[untinted])
    coloured = heat >= SHOWN_FROM + FADE_IN
    assert coloured.any() and np.all(np.abs(overlay[coloured].astype(int) - crop[coloured]).sum(axis=1) > 0)


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_occlusion_of_the_chip_peaks_on_masked_eyes(masked_eyes_model, faces, name):
    crop = faces[name]
    assert peak_in_eyes(chip_occlusion_map(masked_eyes_model, eyes_masked(crop), MASKED), crop)


def test_the_explanation_method_follows_the_backbone_and_head(patch_model, masked_eyes_model, faces):
    assert explain(patch_model, patch_image(0, 5)[0], 0)[1] == "grad-cam"
    assert explain(masked_eyes_model, faces["astronaut"], 0)[1] == "attribution"
    # A head whose scores are not linear in the features (e.g. softmax): occlusion of the aligned chip.
    not_linear = SimpleNamespace(backbone=masked_eyes_model.backbone,
                                 head=SimpleNamespace(probabilities=masked_eyes_model.head.probabilities))
    assert explain(not_linear, faces["astronaut"], 0)[1] == "occlusion"


def test_without_a_class_the_map_is_of_the_class_the_model_names(masked_eyes_model, faces):
    crop = eyes_masked(faces["grace_hopper"])
    named = int(np.argmax(masked_eyes_model.head.probabilities(masked_eyes_model.backbone.features(crop[None]))))
    assert named == MASKED
    np.testing.assert_array_equal(explain(masked_eyes_model, crop)[0], explain(masked_eyes_model, crop, named)[0])
    assert not np.array_equal(explain(masked_eyes_model, crop)[0], explain(masked_eyes_model, crop, 0)[0])


def test_each_block_places_all_of_its_share_of_the_score(faces):
    """A block's density over the face sums to weights . (values - mean), and its values are the served features."""
    extractor = FaceFeatures(["dlib-face", "hog", "lbp", "geometry"])
    crop = faces["astronaut"]
    frame, readings = extractor.read(crop)
    np.testing.assert_array_equal(np.concatenate([r.values for r in readings]), extractor.features(crop[None])[0])
    rng = np.random.default_rng(4)
    for block, reading in zip(extractor.blocks, readings):
        weights, mean = rng.normal(size=block.size), reading.values + rng.normal(0, 0.1, block.size)
        density = reading.locate(weights, mean)
        assert density.shape == (frame.chip if reading.on == "chip" else crop).shape[:2]
        assert density.sum() == pytest.approx(weights @ (reading.values - mean), rel=1e-3), block.name


def test_a_hog_value_is_placed_on_the_block_it_was_read_from():
    grey = np.full((HOG_SIZE, HOG_SIZE), 100, np.uint8)
    changed = grey.copy()
    changed[84:92, 20:28] = 220                          # one 8 px cell: 3rd from the left, 11th from the top
    amounts = np.abs(hog_descriptor(changed) - hog_descriptor(grey))
    density = window_density(hog_blocks(amounts), HOG_BLOCK, HOG_STRIDE, HOG_SIZE)
    y, x = np.unravel_index(np.argmax(density), density.shape)
    assert 80 <= y < 96 and 16 <= x < 32
    # All of it on the blocks that hold the square or its edges' gradients (1 px outside): 3 x 3 blocks.
    assert density[72:104, 8:40].sum() == pytest.approx(density.sum())


def test_the_face_network_shares_add_up_to_the_change_of_its_score(faces):
    """Integrated gradients: the 8 x 8 cells' shares add up to the score's change from an all-zero map."""
    from ml.features.face_models import face_network as _face_network

    network = _face_network()
    frame = FaceFeatures(["dlib-face"]).chip_frame(faces["grace_hopper"])
    chips = np.stack([frame.chip, frame.chip[:, ::-1]])
    activations, descriptors = network.activations(chips)
    np.testing.assert_allclose(descriptors, network.descriptors(chips), atol=1e-4)
    directions = np.random.default_rng(5).normal(size=(2, 128))
    shares = network.integrated_gradients(activations, directions, steps=32)
    empty = np.asarray(network.halves()[1](np.zeros_like(activations)))
    change = np.sum(directions * (descriptors - empty), axis=1)
    assert shares.shape == (2, 8, 8)
    np.testing.assert_allclose(shares.sum(axis=(1, 2)), change, rtol=0.05, atol=0.02 * np.abs(change).max())


def test_a_softmax_heads_direction_is_the_gradient_of_the_class_log_probability():
    from ml.learning.heads import SoftmaxHead
    from ml.learning.options import TrainingOptions

    rng = np.random.default_rng(6)
    x = (rng.normal(size=(40, 5)) * [1, 2, 3, 4, 5] + 3).astype(np.float32)
    labels = np.arange(40) % 3
    head = SoftmaxHead(3, TrainingOptions(head="softmax", epochs=3))
    head.fit(x, labels)
    point, step = x[0].astype(np.float64), 1e-2
    for class_index in range(3):
        def log_p(v):
            return np.log(head.probabilities(v[None].astype(np.float32))[0, class_index])
        numeric = [(log_p(point + step * np.eye(5)[i]) - log_p(point - step * np.eye(5)[i])) / (2 * step)
                   for i in range(5)]
        direction, mean = head.direction(point, class_index)
        np.testing.assert_allclose(direction, numeric, rtol=1e-2, atol=1e-3)
        np.testing.assert_allclose(mean, x.mean(axis=0), rtol=0.2, atol=0.5)     # standardised on its training part
