"""Miss rate and speed of each face detector: as the photo is, inside a border, and both in turn.

Runs on the research-only UTKFace sample in ../shared/data/utkface_age (tightly
cropped faces of children and adults). Usage: .venv/bin/python -m bench.face_detectors [DIR]
"""
import csv
import sys
import time
from pathlib import Path

from ml.photos.faces import DETECTION_BORDERS, DETECTORS, detect_faces
from ml.photos.images import decode_image

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "utkface_age"


def read_manifest(folder):
    """Return the manifest's rows: path, label, age, gender, race."""
    with open(folder / "manifest.csv") as manifest:
        return list(csv.DictReader(manifest))


def load_photos(folder):
    """Return (group, rgb) for every photo listed in the manifest."""
    return [(row["label"], decode_image((folder / row["path"]).read_bytes())) for row in read_manifest(folder)]


def measure(photos, detector, borders):
    """Return misses per group and mean seconds per photo."""
    detect_faces(photos[0][1], detector, borders)   # load the detector outside the timing
    misses, counts = {}, {}
    start = time.perf_counter()
    for group, rgb in photos:
        counts[group] = counts.get(group, 0) + 1
        if not detect_faces(rgb, detector, borders):
            misses[group] = misses.get(group, 0) + 1
    elapsed = (time.perf_counter() - start) / len(photos)
    return {g: misses.get(g, 0) / n for g, n in counts.items()}, elapsed


def main():
    """Print one table: detector x border -> miss rate per group, ms per photo."""
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIR
    photos = load_photos(folder)
    groups = sorted({g for g, _ in photos})
    print(f"{len(photos)} photos from {folder}")
    print(f"{'detector':<8} {'borders':>10} " + " ".join(f"{'miss ' + g:>11}" for g in groups)
          + f" {'miss all':>9} {'ms/photo':>9}")
    for detector in DETECTORS:
        for borders in ((0.0,), DETECTION_BORDERS[1:], DETECTION_BORDERS):
            rates, seconds = measure(photos, detector, borders)
            overall = sum(rates[g] * sum(1 for h, _ in photos if h == g) for g in groups) / len(photos)
            print(f"{detector:<8} {'+'.join(map(str, borders)):>10} " + " ".join(f"{rates[g]:>11.1%}" for g in groups)
                  + f" {overall:>9.1%} {seconds * 1000:>9.1f}")


if __name__ == "__main__":
    main()
