"""Training and serving speed of FaceDx's paths against the obvious implementation, in one run.

(a) a softmax head trained on cached VGG16 features vs end-to-end `model.fit` through the frozen
    VGG16, same images, same split, same epochs;
(b) single-image latency of the serving path (compiled tf.function backbone + head) vs
    `model.predict` on the same network assembled as one Keras model.

Usage: .venv/bin/python -m bench.training_and_serving [--image-size 224] [--images 60] [--epochs 10]
Random weights are used (ImageNet weights cost the same time and may be unavailable offline).
"""
import argparse
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import keras
import numpy as np

from ml.features.vgg import VGGBackbone
from ml.learning.feature_cache import block_features
from ml.learning.fine_tuning import split_indices
from ml.learning.heads import SoftmaxHead, class_weights
from ml.learning.options import TrainingOptions
from ml.photos.faces import CROP_SIZE, FaceOptions
from ml.serving.predictor import load_version
from ml.versions.card import ModelCard
from ml.versions.registry import ModelRegistry


def timed(function):
    """Return (seconds, result) of one call."""
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def make_task(n_images, seed=0):
    """Return face-crop-sized images and labels of a learnable three-class colour task."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n_images) % 3
    colours = np.array([(200, 60, 60), (60, 60, 200), (60, 200, 60)])
    crops = np.clip(rng.normal(colours[labels][:, None, None, :], 35, (n_images, CROP_SIZE, CROP_SIZE, 3)), 0, 255)
    return crops.astype(np.uint8), labels


def random_backbone(image_size, folder):
    """Return VGG16 with random weights saved as a file in `folder`: the weights have an id, so features cache."""
    path = Path(folder) / "random-vgg16.weights.h5"
    VGGBackbone.build("vgg16-imagenet", "none", image_size, ()).base.save_weights(path)
    return VGGBackbone.build("vgg16-imagenet", str(path), image_size, ())


def bench_training(backbone, crops, labels, options):
    """Return seconds for cached-feature training (cold and warm cache) and for end-to-end fit."""
    split = split_indices(labels, options)
    train_idx, val = split["train"], split["validation"]
    digests = [f"image-{i}" for i in range(len(labels))]
    with tempfile.TemporaryDirectory() as cache:
        def cached_run():
            features = block_features([backbone.name], {backbone.name: backbone}, crops, digests, Path(cache),
                                      lambda e: None)[backbone.name]
            head = SoftmaxHead(3, options)
            head.fit(features[train_idx], labels[train_idx], validation=(features[val], labels[val]))
            return head, features
        cold, (head, features) = timed(cached_run)
        warm, _ = timed(cached_run)

    def end_to_end():
        # The same head (its standardisation taken from the features above, at no cost to this
        # baseline), trained end to end through the frozen base.
        fresh = SoftmaxHead(3, options)
        fresh.build(features[train_idx])
        model = assemble(backbone, fresh.model)
        model.compile(optimizer=keras.optimizers.Adam(options.learning_rate),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        pixels = backbone.pixels(crops)
        model.fit(pixels[train_idx], labels[train_idx], epochs=options.epochs, batch_size=options.batch_size,
                  verbose=0, class_weight=class_weights(labels[train_idx]), validation_data=(pixels[val], labels[val]))
    e2e, _ = timed(end_to_end)
    return cold, warm, e2e, head


def assemble(backbone, head_model):
    """Return backbone and head as one Keras model from pixels to probabilities."""
    pixels = keras.Input(backbone.extractor.input_shape[1:], name="pixels")
    return keras.Model(pixels, head_model(backbone.extractor(pixels)))


@contextmanager
def served(backbone, head):
    """Yield the LoadedModel the server would hold for this backbone and head."""
    with tempfile.TemporaryDirectory() as root:
        card = ModelCard(labels=["a", "b", "c"], head="softmax", backbone=backbone.describe(),
                         face=FaceOptions("haar", "whole").as_dict(), dataset={"id": "bench", "images": 0},
                         metrics={"per_class": {}, "accuracy": 0.0, "macro_f1": 0.0},
                         abstention={"min_probability": 0.0, "min_margin": 0.0})
        yield load_version(ModelRegistry(root).save(card, lambda folder: backbone.save(folder) + head.save(folder)))


def bench_latency(backbone, head, crop, repeats):
    """Return median single-image seconds of the serving path and of model.predict."""
    with served(backbone, head) as loaded:
        model = assemble(backbone, head.model)
        pixels = backbone.pixels(crop[np.newaxis])
        serving = timed_median(lambda: loaded.probabilities(crop[np.newaxis]), repeats)
        predict = timed_median(lambda: model.predict(pixels, verbose=0), repeats)
        np.testing.assert_allclose(loaded.probabilities(crop[np.newaxis]), model.predict(pixels, verbose=0),
                                   atol=1e-5)
    return serving, predict


def bench_batch_ceiling(backbone, head, crops):
    """Return images/s of the serving path for batches of len(crops) and for as many concurrent single calls.

    Their ratio is the most that gathering requests into batches can gain on this machine.
    """
    with served(backbone, head) as loaded:
        return bench_batch_ceiling_of(loaded.probabilities, crops)


def bench_batch_ceiling_of(predict, crops, rounds=4):
    """Return images/s of `predict` on batches of len(crops), and on single crops from as many threads."""
    predict(crops)
    batched, _ = timed(lambda: [predict(crops) for _ in range(rounds)])

    def singles(crop):
        for _ in range(rounds):
            predict(crop[np.newaxis])
    with ThreadPoolExecutor(len(crops)) as pool:
        concurrent, _ = timed(lambda: list(pool.map(singles, crops)))
    return rounds * len(crops) / batched, rounds * len(crops) / concurrent


def timed_median(function, repeats=20):
    """Return the median seconds of `repeats` calls, after two to warm up."""
    function(), function()
    return statistics.median(timed(function)[0] for _ in range(repeats))


def conv_gflops(backbone):
    """Return the multiply-add work of VGG16's convolutions for one image, in GFLOPs (2 per multiply-add)."""
    total = 0
    for layer in backbone.base.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, height, width, out_channels = layer.output.shape
            kh, kw, in_channels, _ = layer.kernel.shape
            total += 2 * height * width * kh * kw * in_channels * out_channels
    return total / 1e9


def main():
    """Run both benchmarks and print one table with ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    options = TrainingOptions(backbone="vgg16-imagenet", head="softmax", weights="none", image_size=args.image_size,
                              epochs=args.epochs, patience=args.epochs + 1)
    keras.utils.set_random_seed(0)
    crops, labels = make_task(args.images)
    with tempfile.TemporaryDirectory() as folder:
        backbone = random_backbone(args.image_size, folder)
        cold, warm, e2e, head = bench_training(backbone, crops, labels, options)
    serving, predict = bench_latency(backbone, head, crops[0], args.repeats)
    print(f"VGG16 at {args.image_size}px, {args.images} images, {args.epochs} epochs, random weights")
    print(f"{'measure':<48} {'FaceDx':>10} {'baseline':>10} {'speed-up':>9}")
    print(f"{'training, cached features (cold cache) vs fit':<48} {cold:>9.1f}s {e2e:>9.1f}s {e2e / cold:>8.1f}x")
    print(f"{'training, cached features (warm cache) vs fit':<48} {warm:>9.1f}s {e2e:>9.1f}s {e2e / warm:>8.1f}x")
    print(f"{'single-image latency, serving path vs predict':<48} {serving * 1000:>8.1f}ms "
          f"{predict * 1000:>8.1f}ms {predict / serving:>8.2f}x")


if __name__ == "__main__":
    main()
