"""Run every benchmark: `python -m bench` (the real-face ones need ../shared/data/utkface_age)."""
import sys

from bench import backbones, explanations, face_detectors, training_and_serving

sys.argv = sys.argv[:1]
training_and_serving.main()
explanations.main()
if face_detectors.DEFAULT_DIR.is_dir():
    face_detectors.main()
    backbones.main()
