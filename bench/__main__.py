"""Run every benchmark: `python -m bench` (the face-detector one needs ../shared/data/utkface_age)."""
import sys

from bench import face_detectors, training_and_serving

sys.argv = sys.argv[:1]
training_and_serving.main()
if face_detectors.DEFAULT_DIR.is_dir():
    face_detectors.main()
