"""What a loaded model's extractor offers: the calls every extractor answers, and flags for those only some do.

Code that must know what an extractor can do (which map explains its features) reads its flags,
never its name or which attributes it happens to have. The extractors are `FaceFeatures` (face
blocks, ml/features/extractor.py), `VGGBackbone` (ml/features/vgg.py) and, for versions from
before blocks, `DlibFaceBackbone` (ml/features/dlib_face.py).
"""
from pathlib import Path
from typing import Protocol

import numpy as np


class Extractor(Protocol):
    """Turns face crops into one feature vector each; described on the model card, saved with its version."""
    name: str                   # the pipeline or backbone, as the card names it
    input_size: int             # pixels a side of what the network reads
    feature_size: int
    # Capabilities, each naming the calls it adds:
    attributable: bool          # places every feature value on the face: `read(crop)` (attribution maps)
    has_conv_maps: bool         # a convolutional network whose last maps Grad-CAM weighs: `base`, `submodel`,
                                # `pixels`, `extractor`
    occludable: bool            # recomputes its aligned chip's features with patches filled: `chip_frame(crop)`,
                                # `occluded_features(frame, boxes, fill)`

    def features(self, crops: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
        """Return one feature vector per face crop; with `reference`, aligned on the reference's landmarks."""

    def describe(self) -> dict:
        """Return what the model card says of the extractor: name, sizes, weights, alignment."""

    def save(self, folder: Path) -> list[str]:
        """Write what the version needs beyond the packages' networks; return the file names written."""
