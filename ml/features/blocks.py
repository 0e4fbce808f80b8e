"""Feature blocks: how a face crop becomes numbers, behind one Protocol and one registry.

A block reads `AlignedFace`s: the 256 px crop from import or prediction, dlib's 150 px chip
aligned on the 5 landmarks, and (computed when a block asks) the 68 landmarks. All blocks of a
photo share that one detection and one alignment. A pipeline's extractor (ml/features/extractor.py)
is either `FaceFeatures` (face blocks, concatenated) or a VGG16 backbone, whose details stay in
ml/features/vgg.py.
"""
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import cv2
import numpy as np

from ml.features.dlib_face import import_dlib
from ml.features.face_models import face_landmarks, face_network
from ml.features.geometry import GEOMETRY_SIZE, inter_ocular, landmark_geometry, point_amounts
from ml.features.hog import HOG_BLOCK, HOG_SIZE, HOG_STRIDE, hog_blocks, hog_descriptor
from ml.features.lbp import LBP_BINS, lbp_histograms
from ml.features.located import cell_density, point_density, window_density

LBP_GRID = 7
LANDMARK_SPREAD = 0.15   # a landmark's share is drawn as a Gaussian this fraction of the eyes' distance wide


@dataclass
class AlignedFace:
    """One face as every block sees it: the crop, the aligned chip and, on demand, 68 landmarks."""
    crop: np.ndarray
    chip: np.ndarray
    _points: np.ndarray | None = field(default=None, repr=False)

    @property
    def grey_chip(self):
        return cv2.cvtColor(self.chip, cv2.COLOR_RGB2GRAY)

    def points(self):
        """Return the 68 landmarks of the face in the crop (found once)."""
        if self._points is None:
            self._points = face_landmarks(self.crop)
        return self._points


@dataclass(frozen=True)
class ChipFrame:
    """A crop's aligned chip and where the chip lies in the crop (dlib's chip details)."""
    crop: np.ndarray
    chip: np.ndarray
    details: object

    def on_crop(self, chip_values):
        """Return a float32 image of the crop's size holding chip-sized values where the chip lies (0 elsewhere)."""
        dlib, _ = import_dlib("Face alignment")
        drawn = np.zeros(self.crop.shape[:2], np.float32)
        dlib.insert_image_chip(drawn, np.ascontiguousarray(chip_values, dtype=np.float32), self.details)
        return drawn

    def density_on_crop(self, density):
        """Return a density over the chip (amount per chip pixel) as one over the crop (amount per crop pixel)."""
        crop_pixels_per_chip_pixel = self.details.rect.width() / self.chip.shape[1]
        return self.on_crop(density) / crop_pixels_per_chip_pixel ** 2

    def box_on_crop(self, box):
        """Return where a box (x0, y0, x1, y1) of the chip lies in the crop, as a boolean mask."""
        x0, y0, x1, y1 = box
        column, row, covered = self._chip_pixels
        # Chip pixel i covers [i - 0.5, i + 0.5): the box covers [x0 - 0.5, x1 - 0.5) across.
        return covered & (column >= x0 - 0.5) & (column < x1 - 0.5) & (row >= y0 - 0.5) & (row < y1 - 0.5)

    @functools.cached_property
    def _chip_pixels(self):
        """Return, for each crop pixel, the chip column and row it shows, and whether the chip covers it."""
        rows, columns = np.indices(self.chip.shape[:2], dtype=np.float32)
        covered = self.on_crop(np.ones(self.chip.shape[:2], np.float32)) >= 0.5
        return self.on_crop(columns), self.on_crop(rows), covered


@dataclass(frozen=True)
class Reading:
    """A block's values for one face, and where on the face a linear score of them comes from.

    `locate(weights, mean)` returns a density over the chip or the crop (`on`) whose sum is
    `weights . (values - mean)`: the block's share of the score, placed where it was read.
    """
    values: np.ndarray
    on: str                      # "chip" or "crop"
    locate: Callable


class FeatureBlock(Protocol):
    """What every block offers: a name, a cache id, its size, a card entry, features of aligned faces and a reading."""
    name: str
    cache_id: str | None        # None: features must not be cached (random weights)
    size: int

    def describe(self) -> dict: ...

    def features(self, faces: list[AlignedFace]) -> np.ndarray: ...

    def read(self, face: AlignedFace) -> Reading: ...


class DlibFaceBlock:
    """dlib's face-recognition ResNet, run by Keras in batches: 128 values, the mirror image's averaged in.

    With `network`, a DlibResnet whose tail was fine-tuned for one model version; without, the
    process's one network with dlib's weights.
    """
    name = "dlib-face"
    size = 128

    def __init__(self, network=None):
        self._network = network
        # The Keras network's descriptors equal dlib-bin's to 4e-7, but features cached by one are
        # never mixed with the other's: a new cache id. A fine-tuned network's are never cached.
        self.cache_id = None if network is not None else "dlib-face-keras-v1-mirror"

    @property
    def network(self):
        return self._network if self._network is not None else face_network()

    def describe(self):
        described = {"name": self.name, "size": self.size, "weights": "dlib_face_recognition_resnet_model_v1",
                     "detail": "128-d face descriptor of the aligned chip, averaged with its mirror image's "
                               "(dlib's ResNet rebuilt in Keras)"}
        if self._network is not None:
            described["fine_tuned"] = "the 256-filter stages and the descriptor's layer, on this version's dataset"
        return described

    def features(self, faces):
        chips = np.stack([face.chip for face in faces])
        descriptors = self.network.descriptors(np.concatenate([chips, chips[:, :, ::-1]]))   # one batch
        return (descriptors[:len(chips)] + descriptors[len(chips):]) / 2

    def read(self, face):
        """The descriptor, and its share of a score placed by integrated gradients on the network's 8 x 8 map.

        What the path from an all-zero map does not account for (the descriptor of that empty map
        against the training mean, and the integration's small error) is spread evenly over the chip.
        """
        network = self.network
        activations, descriptors = network.activations(np.stack([face.chip, face.chip[:, ::-1]]))
        values = descriptors.mean(axis=0)

        def locate(weights, mean):
            halves = network.integrated_gradients(activations, np.stack([weights, weights]) / 2)
            side = face.chip.shape[0]
            density = cell_density(halves[0], side, side) + cell_density(halves[1], side, side)[:, ::-1]
            return density + (weights @ (values - mean) - density.sum()) / density.size
        return Reading(values, "chip", locate)


class HogBlock:
    """Histograms of oriented gradients of the aligned chip (the classic Dalal-Triggs layout)."""
    name = "hog"
    cache_id = "hog-chip-128-v1"
    size = 8100

    def describe(self):
        return {"name": self.name, "size": self.size, "detail": f"HOG of the aligned chip at {HOG_SIZE} px, "
                                                               "16 px blocks of 2x2 cells of 8 px, 9 orientations"}

    def features(self, faces):
        return np.stack([hog_descriptor(face.grey_chip) for face in faces])

    def read(self, face):
        """The descriptor, each value's share of a score spread over its 16 px block (the chip is read at 128 px)."""
        values = hog_descriptor(face.grey_chip)

        def locate(weights, mean):
            density = window_density(hog_blocks(weights * (values - mean)), HOG_BLOCK, HOG_STRIDE, HOG_SIZE)
            return cell_density(density, *face.chip.shape[:2])        # each 128 px pixel over its chip pixels
        return Reading(values, "chip", locate)


class LbpBlock:
    """Uniform local binary patterns of the aligned chip, one histogram per cell of a grid."""
    name = "lbp"
    cache_id = f"lbp-chip-{LBP_GRID}-v1"
    size = LBP_GRID * LBP_GRID * LBP_BINS

    def describe(self):
        return {"name": self.name, "size": self.size,
                "detail": f"uniform LBP (8 neighbours, radius 1) histograms on a {LBP_GRID}x{LBP_GRID} grid"}

    def features(self, faces):
        return np.stack([lbp_histograms(face.grey_chip, LBP_GRID) for face in faces])

    def read(self, face):
        """The histograms, each value's share of a score spread over its cell (codes exist inside a 1 px border)."""
        values = lbp_histograms(face.grey_chip, LBP_GRID)

        def locate(weights, mean):
            cells = (weights * (values - mean)).reshape(LBP_GRID, LBP_GRID, LBP_BINS).sum(axis=2)
            density = np.zeros(face.chip.shape[:2])
            density[1:-1, 1:-1] = cell_density(cells, density.shape[0] - 2, density.shape[1] - 2)
            return density
        return Reading(values, "chip", locate)


class GeometryBlock:
    """The shape of the face: dlib's 68 landmarks, normalised for position, size and rotation, and distances."""
    name = "geometry"
    cache_id = "geometry-68-v1"
    size = GEOMETRY_SIZE

    def describe(self):
        return {"name": self.name, "size": self.size,
                "detail": "68 landmarks after similarity alignment, and distances over the inter-ocular one"}

    def features(self, faces):
        return np.stack([landmark_geometry(face.points()) for face in faces])

    def read(self, face):
        """The shape, each value's share of a score drawn at its landmark (a distance's at both ends), on the crop."""
        points = face.points()
        values = landmark_geometry(points)

        def locate(weights, mean):
            return point_density(point_amounts(weights * (values - mean)), points, face.crop.shape,
                                 LANDMARK_SPREAD * inter_ocular(points))
        return Reading(values, "crop", locate)


FACE_BLOCKS = {"dlib-face": DlibFaceBlock, "hog": HogBlock, "lbp": LbpBlock, "geometry": GeometryBlock}
