"""One table, one run: each FaceDx figure beside its baseline measured the same way on this machine.

- model-only single-image latency: serving path (compiled tf.function) vs `model.predict`
- training, 10 head epochs: cached features vs end-to-end `model.fit` through the frozen base
- HTTP predict through gunicorn on 127.0.0.1, one client: p50 / p95, against the model-only latency
- throughput with 8 concurrent clients: requests gathered into batches vs the same server without
  batching (8 threads each running its own model call)
- the most batching can gain here: the model alone on a batch of 8 vs 8 concurrent single calls
- resident memory of the web worker with the model loaded, and peak memory of a training process
Usage: .venv/bin/python -m bench.speed [--image-size 224] [--seconds 20]
"""
import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import keras
import requests

from bench.load import hammer, percentile
from bench.server import gunicorn, photos, prepared_data, rss_mib
from bench.training_and_serving import (
    bench_batch_ceiling,
    bench_latency,
    bench_training,
    conv_gflops,
    make_task,
    random_backbone,
)
from ml.learning.options import TrainingOptions
from ml.versions.registry import ModelRegistry


def http_latencies(base, headers, sample, count=40):
    """Return the latencies of `count` predictions sent one after another."""
    session, latencies = requests.Session(), []
    for i in range(count + 3):
        start = time.perf_counter()
        response = session.post(base + "/api/v1/predict", headers=headers,
                                files={"image": ("p.png", sample[i % len(sample)])}, timeout=60)
        assert response.status_code == 200, response.text
        if i >= 3:                                     # the first ones warm up
            latencies.append(time.perf_counter() - start)
    return latencies


def throughput(base, headers, sample, clients, seconds):
    """Return (requests per second, statuses) for `clients` concurrent clients over `seconds`."""
    deadline = time.monotonic() + seconds
    start = time.monotonic()
    latencies, statuses = hammer(base + "/api/v1/predict", headers, sample, clients,
                                 lambda: time.monotonic() > deadline)
    return len(latencies) / (time.monotonic() - start), statuses


def machine():
    """Describe the processor (and GPU, when TensorFlow sees one) the figures come from."""
    import tensorflow as tf

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    gpus = [tf.config.experimental.get_device_details(d).get("device_name", d.name)
            for d in tf.config.list_physical_devices("GPU")]
    return f"{cpu}, {os.cpu_count()} cores, " + (f"GPU {', '.join(gpus)}" if gpus else "no GPU")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--seconds", type=int, default=20)
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    options = TrainingOptions(backbone="vgg16-imagenet", head="softmax", weights="none", image_size=args.image_size,
                              epochs=10, patience=11)
    crops, labels = make_task(60)
    with tempfile.TemporaryDirectory() as folder:
        backbone = random_backbone(args.image_size, folder)
        cold, warm, e2e, head = bench_training(backbone, crops, labels, options)
    serving, predict = bench_latency(backbone, head, crops[0], 30)
    batch_rate, singles_rate = bench_batch_ceiling(backbone, head, crops[:8])
    sample = photos()
    with prepared_data(args.image_size) as (env, _, doctor, version):
        card = ModelRegistry(Path(env["FACEDX_DATA_DIR"]) / "models").get(version).card
        with gunicorn(env) as (base, worker):
            one = http_latencies(base, doctor, sample)
            batched, batched_statuses = throughput(base, doctor, sample, 8, args.seconds)
            rss = rss_mib(worker)
        with gunicorn(env, FACEDX_BATCH_WINDOW_MS=0) as (base, _):
            unbatched, unbatched_statuses = throughput(base, doctor, sample, 8, args.seconds)
    p50, p95 = statistics.median(one), percentile(one, 0.95)
    rows = [
        ("model-only latency, 1 image", f"{serving * 1000:.1f} ms", "model.predict", f"{predict * 1000:.1f} ms",
         f"{predict / serving:.2f}x faster"),
        ("training, 10 head epochs", f"{cold:.1f} s", "model.fit end to end", f"{e2e:.1f} s",
         f"{e2e / cold:.1f}x faster"),
        ("  same, features already cached", f"{warm:.1f} s", "model.fit end to end", f"{e2e:.1f} s",
         f"{e2e / warm:.1f}x faster"),
        ("HTTP predict, 1 client, p50", f"{p50 * 1000:.0f} ms", "model-only latency", f"{serving * 1000:.0f} ms",
         f"+{(p50 - serving) * 1000:.0f} ms"),
        ("HTTP predict, 1 client, p95", f"{p95 * 1000:.0f} ms", "", "", ""),
        ("8 clients, batched", f"{batched:.1f} req/s", "no batching", f"{unbatched:.1f} req/s",
         f"{batched / unbatched:.2f}x"),
        ("model only, batch of 8", f"{batch_rate:.1f} img/s", "8 concurrent calls", f"{singles_rate:.1f} img/s",
         f"{batch_rate / singles_rate:.2f}x"),
        ("web worker memory, model loaded", f"{rss:.0f} MiB", "", "", ""),
        ("training process, peak memory", f"{card.training_peak_memory_mib} MiB", "", "", ""),
    ]
    gflops = conv_gflops(backbone)
    print(f"{machine()}; VGG16 at {args.image_size} px ({gflops:.1f} GFLOP per image), random weights (ImageNet's "
          f"cost the same), linear head for HTTP rows; statuses batched {batched_statuses}, "
          f"unbatched {unbatched_statuses}")
    print(f"Arithmetic rate: one image {gflops / serving:.0f} GFLOP/s, batches of 8 {gflops * batch_rate:.0f} GFLOP/s")
    print(f"{'measure':<34} {'FaceDx':>12}   {'baseline':<22} {'':>12} {'ratio':>14}")
    for name, ours, baseline, theirs, ratio in rows:
        print(f"{name:<34} {ours:>12}   {baseline:<22} {theirs:>12} {ratio:>14}")


if __name__ == "__main__":
    main()
