"""Large photos: face detection in phone-sized photos, and a server's cost for a 40-megapixel one.

Detection: the astronaut (scikit-image) and Grace Hopper (matplotlib) photos, enlarged to the
size of a 12-megapixel phone photo's longer side. For each detector: milliseconds per photo
searched as it is and shrunk to DETECTION_MAX_SIDE, and how well the boxes agree (intersection
over union, in the large photo's coordinates).
Server: a 115 KB PNG of 6300 x 6300 black pixels (39.7 megapixels, under the 40-megapixel limit)
posted to /api/v1/predict of gunicorn as `make run` starts it, once and then by 16 clients at
once: the worker's CPU seconds and its peak resident memory. To compare with another checkout,
copy this file into it and run it there (it serves that checkout's code).
Usage: .venv/bin/python -m bench.large_photos [--side 4032] [--clients 16] [--server-only]
"""
import argparse
import concurrent.futures
import io
import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import requests
from PIL import Image

from bench.server import colour_png, gunicorn, prepared_data, rss_mib
from bench.training_and_serving import timed_median
from ml.photos.faces import DETECTION_MAX_SIDE, DETECTORS, detect_faces

HEAVY_SIDE = 6300


def package_photos(side):
    """Return {name: RGB array} of the package photos enlarged so their longer side is `side`."""
    import matplotlib.cbook
    import skimage.data

    hopper = np.asarray(Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
                        .convert("RGB"))
    photos = {}
    for name, rgb in (("astronaut", skimage.data.astronaut()), ("grace_hopper", hopper)):
        scale = side / max(rgb.shape[:2])
        size = (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale))
        photos[name] = cv2.resize(rgb, size, interpolation=cv2.INTER_CUBIC)
    return photos


def largest(boxes):
    return max((box for box, _ in boxes), key=lambda box: box.width * box.height, default=None)


def overlap(a, b):
    """Intersection over union of two FaceBoxes (0 when either is missing)."""
    if a is None or b is None:
        return 0.0
    width = max(0, min(a.x + a.width, b.x + b.width) - max(a.x, b.x))
    height = max(0, min(a.y + a.height, b.y + b.height) - max(a.y, b.y))
    shared = width * height
    return shared / (a.width * a.height + b.width * b.height - shared)


def detection(side, repeats):
    """Print each detector's time and box agreement on the enlarged package photos."""
    photos = package_photos(side)
    print(f"photos enlarged to a longer side of {side} px; shrunk for detection to {DETECTION_MAX_SIDE} px")
    print(f"{'detector':<8} {'photo':<14} {'as is':>9} {'shrunk':>9} {'speed-up':>9} {'box IoU':>8}")
    for detector in DETECTORS:
        for name, rgb in photos.items():
            full = timed_median(lambda: detect_faces(rgb, detector, max_side=None), repeats)
            shrunk = timed_median(lambda: detect_faces(rgb, detector), repeats)
            full_boxes, shrunk_boxes = detect_faces(rgb, detector, max_side=None), detect_faces(rgb, detector)
            print(f"{detector:<8} {name:<14} {full * 1000:>7.0f}ms {shrunk * 1000:>7.0f}ms {full / shrunk:>8.1f}x "
                  f"{overlap(largest(full_boxes), largest(shrunk_boxes)):>8.2f}")


def black_png(side):
    """Return a PNG of side x side black pixels: zlib squeezes 6300 x 6300 of them into 115 KB."""
    buffer = io.BytesIO()
    Image.new("RGB", (side, side)).save(buffer, format="PNG")
    return buffer.getvalue()


def cpu_seconds(pid):
    """User plus system CPU time a process has used, all its threads together."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class PeakMemory:
    """Sample a process's resident memory every 20 ms while the block runs; `peak` is the highest, in MiB."""

    def __init__(self, pid):
        self.pid, self.peak, self._done = pid, rss_mib(pid), threading.Event()

    def _sample(self):
        while not self._done.wait(0.02):
            self.peak = max(self.peak, rss_mib(self.pid))

    def __enter__(self):
        self._thread = threading.Thread(target=self._sample)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()


def heavy_photo(clients):
    """Print the worker's CPU seconds and peak memory for one, then `clients` concurrent, 40-megapixel PNGs."""
    photo = black_png(HEAVY_SIDE)
    with prepared_data(64) as (env, _, doctor, _), gunicorn(env) as (base, worker):
        url = base + "/api/v1/predict"

        def post(data):
            return requests.post(url, headers=doctor, files={"image": ("p.png", data)}, timeout=600).status_code
        post(colour_png((200, 60, 60), 1))
        print(f"{HEAVY_SIDE} x {HEAVY_SIDE} black PNG ({len(photo) // 1024} KB) to /api/v1/predict; "
              f"worker at {rss_mib(worker):.0f} MiB after one ordinary prediction")
        print(f"{'clients':>7} {'answers':<12} {'wall':>7} {'worker CPU':>11} {'peak memory':>12}")
        for count in (1, clients):
            cpu, start = cpu_seconds(worker), time.perf_counter()
            with PeakMemory(worker) as memory, concurrent.futures.ThreadPoolExecutor(count) as pool:
                statuses = list(pool.map(post, [photo] * count))
            answers = ", ".join(f"{statuses.count(s)}x{s}" for s in sorted(set(statuses)))
            print(f"{count:>7} {answers:<12} {time.perf_counter() - start:>6.1f}s "
                  f"{cpu_seconds(worker) - cpu:>10.1f}s {memory.peak:>8.0f} MiB")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=4032)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--server-only", action="store_true", help="only the 40-megapixel PNG through the server")
    args = parser.parse_args()
    if not args.server_only:
        detection(args.side, args.repeats)
    heavy_photo(args.clients)


if __name__ == "__main__":
    main()
