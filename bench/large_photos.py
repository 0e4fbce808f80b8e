"""Face detection in phone-sized photos: searched as they are vs shrunk to DETECTION_MAX_SIDE, one run.

The astronaut (scikit-image) and Grace Hopper (matplotlib) photos, enlarged to the size of a
12-megapixel phone photo's longer side. For each detector: milliseconds per photo both ways,
and how well the boxes agree (intersection over union, in the large photo's coordinates).
Usage: .venv/bin/python -m bench.large_photos [--side 4032]
"""
import argparse

import cv2
import numpy as np
from PIL import Image

from bench.training_and_serving import timed_median
from ml.faces import DETECTION_MAX_SIDE, DETECTORS, detect_faces


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=4032)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    photos = package_photos(args.side)
    print(f"photos enlarged to a longer side of {args.side} px; shrunk for detection to {DETECTION_MAX_SIDE} px")
    print(f"{'detector':<8} {'photo':<14} {'as is':>9} {'shrunk':>9} {'speed-up':>9} {'box IoU':>8}")
    for detector in DETECTORS:
        for name, rgb in photos.items():
            full = timed_median(lambda: detect_faces(rgb, detector, max_side=None), args.repeats)
            shrunk = timed_median(lambda: detect_faces(rgb, detector), args.repeats)
            full_boxes, shrunk_boxes = detect_faces(rgb, detector, max_side=None), detect_faces(rgb, detector)
            print(f"{detector:<8} {name:<14} {full * 1000:>7.0f}ms {shrunk * 1000:>7.0f}ms {full / shrunk:>8.1f}x "
                  f"{overlap(largest(full_boxes), largest(shrunk_boxes)):>8.2f}")


if __name__ == "__main__":
    main()
