"""Training and serving speed of FaceDx's paths against the obvious implementation, in one run.

(a) head training on cached features vs end-to-end `model.fit` through the frozen VGG16,
    same images, same split, same epochs;
(b) single-image latency of the serving path (compiled tf.function) vs `model.predict`.

Usage: .venv/bin/python -m bench.training_and_serving [--image-size 224] [--images 60] [--epochs 10]
Random weights are used (ImageNet weights cost the same time and may be unavailable offline).
"""
import argparse
import statistics
import tempfile
import time
from pathlib import Path

import keras
import numpy as np

from ml.backbones import WeightsSource, build_feature_extractor, build_vgg16
from ml.predictor import load_version
from ml.registry import ModelRegistry
from ml.training import (TrainingOptions, assemble, build_head, class_weights, extract_features, fit_head,
                         split_indices)


def timed(function):
    """Return (seconds, result) of one call."""
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def make_task(n_images, size, seed=0):
    """Return pixels and labels of a learnable three-class colour task."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n_images) % 3
    colours = np.array([(200, 60, 60), (60, 60, 200), (60, 200, 60)])
    pixels = np.clip(rng.normal(colours[labels][:, None, None, :], 35, (n_images, size, size, 3)), 0, 255)
    return pixels.astype(np.uint8), labels


def bench_training(pixels, labels, options):
    """Return seconds for cached-feature training (cold and warm cache) and for end-to-end fit."""
    split = split_indices(labels, options)
    digests = [f"image-{i}" for i in range(len(labels))]
    extractor = build_feature_extractor(build_vgg16(options.image_size, WeightsSource("none")))
    with tempfile.TemporaryDirectory() as cache:
        def cached_run():
            features = extract_features(extractor, pixels, digests, Path(cache), lambda e: None)
            head = build_head(features[split["train"]], 3, options.dropout)
            fit_head(head, features, labels, split, options, lambda e: None)
            return head, features
        cold, (head, features) = timed(cached_run)
        warm, _ = timed(cached_run)

    def end_to_end():
        # The same head (its standardisation taken from the features above, at no cost to this
        # baseline), trained end to end through the frozen base.
        model = assemble(extractor, build_head(features[split["train"]], 3, options.dropout))
        model.compile(optimizer=keras.optimizers.Adam(options.learning_rate),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        train_idx, val = split["train"], split["validation"]
        model.fit(pixels[train_idx].astype("float32"), labels[train_idx], epochs=options.epochs,
                  batch_size=options.batch_size, verbose=0, class_weight=class_weights(labels[train_idx]),
                  validation_data=(pixels[val].astype("float32"), labels[val]))
        return model
    e2e, _ = timed(end_to_end)
    return cold, warm, e2e, assemble(extractor, head)


def bench_latency(model, size, repeats):
    """Return median single-image seconds of the serving path and of model.predict."""
    with tempfile.TemporaryDirectory() as root:
        version = ModelRegistry(root).save(model, {"image_size": size, "labels": ["a", "b", "c"]})
        loaded = load_version(version)
        image = np.random.default_rng(1).uniform(0, 255, (1, size, size, 3)).astype("float32")
        model.predict(image, verbose=0)
        serving = [timed(lambda: loaded.probabilities(image))[0] for _ in range(repeats)]
        predict = [timed(lambda: model.predict(image, verbose=0))[0] for _ in range(repeats)]
        np.testing.assert_allclose(loaded.probabilities(image), model.predict(image, verbose=0), atol=1e-5)
    return statistics.median(serving), statistics.median(predict)


def main():
    """Run both benchmarks and print one table with ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    options = TrainingOptions(weights="none", image_size=args.image_size, epochs=args.epochs,
                              patience=args.epochs + 1)
    keras.utils.set_random_seed(0)
    pixels, labels = make_task(args.images, args.image_size)
    cold, warm, e2e, model = bench_training(pixels, labels, options)
    serving, predict = bench_latency(model, args.image_size, args.repeats)
    print(f"VGG16 at {args.image_size}px, {args.images} images, {args.epochs} epochs, random weights")
    print(f"{'measure':<48} {'FaceDx':>10} {'baseline':>10} {'speed-up':>9}")
    print(f"{'training, cached features (cold cache) vs fit':<48} {cold:>9.1f}s {e2e:>9.1f}s {e2e / cold:>8.1f}x")
    print(f"{'training, cached features (warm cache) vs fit':<48} {warm:>9.1f}s {e2e:>9.1f}s {e2e / warm:>8.1f}x")
    print(f"{'single-image latency, serving path vs predict':<48} {serving * 1000:>8.1f}ms "
          f"{predict * 1000:>8.1f}ms {predict / serving:>8.2f}x")


if __name__ == "__main__":
    main()
