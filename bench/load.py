"""Load: 20 concurrent doctors predicting through gunicorn on 127.0.0.1 for 60 s while a training job runs.

Then 1,000 more requests with no training, to see whether the worker's memory grows.
Prints requests/s, p50/p95/p99 latency, errors by status and the worker's resident memory.
The model is VGG16 at 224 px with random weights (ImageNet weights cost the same time) and a
linear head, trained on generated images in a temporary data folder.
Usage: .venv/bin/python -m bench.load [--clients 20] [--seconds 60] [--image-size 224]
"""
import argparse
import concurrent.futures
import statistics
import threading
import time

import requests

from bench.server import gunicorn, photos, prepared_data, rss_mib


def percentile(values, share):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def hammer(url, headers, photos, clients, stop):
    """Send predictions from `clients` threads until stop() says so; return (latencies, statuses)."""
    latencies, statuses, lock = [], {}, threading.Lock()

    def doctor(number):
        session = requests.Session()
        i = number
        while not stop():
            start = time.perf_counter()
            try:
                status = session.post(url, headers=headers, files={"image": ("p.png", photos[i % len(photos)])},
                                      timeout=60).status_code
            except requests.RequestException:
                status = "connection error"
            with lock:
                latencies.append(time.perf_counter() - start)
                statuses[status] = statuses.get(status, 0) + 1
            i += 1

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(doctor, range(clients)))
    return latencies, statuses


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--image-size", type=int, default=224)
    args = parser.parse_args()
    with prepared_data(args.image_size) as (env, admin, doctor, _), gunicorn(env) as (base, worker):
        sample = photos()
        url = base + "/api/v1/predict"
        for photo in sample[:3]:
            requests.post(url, headers=doctor, files={"image": ("p.png", photo)}, timeout=60)
        rss_start = rss_mib(worker)
        job = requests.post(base + "/api/v1/training-jobs", headers=admin, timeout=30, json={
            "dataset": "bench", "options": {"backbone": "vgg16-imagenet", "weights": "none",
                                            "image_size": args.image_size, "head": "softmax",
                                            "epochs": 1000, "patience": 1000}}).json()
        deadline = time.monotonic() + args.seconds
        started = time.monotonic()
        latencies, statuses = hammer(url, doctor, sample, args.clients, lambda: time.monotonic() > deadline)
        elapsed = time.monotonic() - started
        training = requests.get(f"{base}/api/v1/training-jobs/{job['id']}", headers=admin, timeout=30).json()
        requests.post(f"{base}/api/v1/training-jobs/{job['id']}/cancel", headers=admin, timeout=30)
        rss_end = rss_mib(worker)
        counter = {"n": 0}

        def thousand():
            counter["n"] += 1
            return counter["n"] > 1000
        time.sleep(5)
        rss_before_1000 = rss_mib(worker)
        more, more_statuses = hammer(url, doctor, sample, 4, thousand)
        rss_after_1000 = rss_mib(worker)
    errors_5xx = sum(n for status, n in statuses.items() if not isinstance(status, int) or status >= 500)
    print(f"{args.clients} clients for {elapsed:.0f} s against gunicorn (1 worker x 8 threads), VGG16 "
          f"{args.image_size} px + linear head, a training job {training['status']} meanwhile "
          f"(phase {training['progress'].get('phase')})")
    print(f"requests: {len(latencies)}  ({len(latencies) / elapsed:.1f}/s)  statuses: {statuses}  5xx/errors: "
          f"{errors_5xx}")
    print(f"latency p50 {statistics.median(latencies) * 1000:.0f} ms  p95 {percentile(latencies, .95) * 1000:.0f} ms"
          f"  p99 {percentile(latencies, .99) * 1000:.0f} ms")
    print(f"worker memory: {rss_start:.0f} MiB at start, {rss_end:.0f} MiB after the load")
    print(f"then {len(more)} more requests ({more_statuses}), no training: {rss_before_1000:.0f} MiB -> "
          f"{rss_after_1000:.0f} MiB")


if __name__ == "__main__":
    main()
