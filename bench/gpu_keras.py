"""The VGG16 model code on an accelerator: fine-tuning steps and serving, float32 and mixed float16.

`KERAS_BACKEND=jax python -m bench.gpu_keras [--out results.json]` on a machine with a GPU and
Keras 3 (TensorFlow or JAX backend). It builds the backbone exactly as training does
(ml/features/vgg.py: VGG16 without its top, the preprocessing layer, pooled features, the last
block unfrozen), adds a softmax head, and reports:

- seconds per fine-tuning epoch (random weights and photos: speed, not accuracy), float32 and
  mixed float16, and that mixed precision keeps float32 weights and a finite loss;
- serving latency per photo at batch 1, 16 and 64;
- how far the accelerator's features are from the CPU's for the same photos (the same model
  must give the same features wherever it runs).
"""
import argparse
import json
import time

import keras
import numpy as np

from ml.features.vgg import WeightsSource, build_feature_extractor, build_vgg16, unfreeze_last_block

IMAGE_SIZE = 224
PHOTOS, CLASSES, BATCH, EPOCHS = 512, 5, 32, 3


def fine_tuning_model(policy):
    """Return (base, model): VGG16 features with the last block trainable and a softmax head."""
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)
    base = build_vgg16(IMAGE_SIZE, WeightsSource("none"))
    extractor = build_feature_extractor(base)
    unfreeze_last_block(base)
    outputs = keras.layers.Dense(CLASSES, activation="softmax", dtype="float32")(extractor.output)
    model = keras.Model(extractor.input, outputs)
    model.compile(keras.optimizers.Adam(1e-5), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return base, model


def fine_tune(policy, photos, labels):
    """Return epoch times and the last loss of a few fine-tuning epochs under `policy`."""
    base, model = fine_tuning_model(policy)
    times, loss = [], None
    for _ in range(EPOCHS):
        started = time.perf_counter()
        loss = model.fit(photos, labels, batch_size=BATCH, epochs=1, verbose=0).history["loss"][-1]
        times.append(time.perf_counter() - started)
    weights = {w.dtype for w in base.trainable_weights}
    keras.mixed_precision.set_global_policy("float32")
    return {"first_epoch_s": round(times[0], 2), "epoch_s": round(float(np.median(times[1:])), 2),
            "photos_per_s": round(PHOTOS / float(np.median(times[1:])), 1), "loss": float(loss),
            "loss_finite": bool(np.isfinite(loss)), "weight_dtypes": sorted(str(d) for d in weights)}


def serving(extractor, photos):
    """Return milliseconds per photo at several batch sizes (after one warm-up call each)."""
    found = {}
    for batch in (1, 16, 64):
        chunk = photos[:batch]
        extractor.predict(chunk, verbose=0)
        started, repeats = time.perf_counter(), max(3, 64 // batch)
        for _ in range(repeats):
            extractor.predict(chunk, verbose=0)
        found[f"batch_{batch}_ms_per_photo"] = round(1000 * (time.perf_counter() - started) / repeats / batch, 2)
    return found


def cpu_agreement(extractor, photos):
    """Return the largest relative difference between accelerator and CPU features (JAX backend only)."""
    if keras.backend.backend() != "jax":
        return None
    import jax

    on_device = extractor.predict(photos, verbose=0)
    with jax.default_device(jax.devices("cpu")[0]):
        on_cpu = np.asarray(extractor(photos, training=False))
    return float(np.max(np.abs(on_device - on_cpu)) / max(float(np.max(np.abs(on_cpu))), 1e-12))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the results as JSON to this file")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    photos = rng.integers(0, 256, (PHOTOS, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
    labels = rng.integers(0, CLASSES, PHOTOS)
    results = {"backend": keras.backend.backend(), "keras": keras.__version__}
    if results["backend"] == "jax":
        import jax
        results["devices"] = [str(d) for d in jax.devices()]
    results["fine_tune_float32"] = fine_tune("float32", photos, labels)
    results["fine_tune_mixed_float16"] = fine_tune("mixed_float16", photos, labels)
    keras.utils.set_random_seed(0)
    extractor = build_feature_extractor(build_vgg16(IMAGE_SIZE, WeightsSource("none")))
    results["serving"] = serving(extractor, photos)
    results["features_vs_cpu_max_relative_difference"] = cpu_agreement(extractor, photos[:8])
    print(json.dumps(results, indent=1))
    if args.out:
        with open(args.out, "w") as stream:
            json.dump(results, stream, indent=1)


if __name__ == "__main__":
    main()
