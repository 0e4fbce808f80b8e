"""Run every benchmark: `python -m bench` (the real-face ones need ../shared/data/utkface_age)."""
import sys

from bench import accuracy, cases, explanations, face_detectors, large_photos, load, speed

sys.argv = sys.argv[:1]
speed.main()
explanations.main()
large_photos.main()
load.main()
if face_detectors.DEFAULT_DIR.is_dir():
    face_detectors.main()
    accuracy.main()
    cases.main()
