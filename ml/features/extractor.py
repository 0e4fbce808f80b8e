"""Extractors: how a pipeline turns face crops into features, for training and for a saved version.

A pipeline's extractor is either `FaceFeatures` (face blocks, ml/features/blocks.py, on one
alignment per photo, concatenated) or a VGG16 backbone, whose details stay in ml/features/vgg.py; both
offer what ml/features/contract.py describes.
"""
import numpy as np

from ml.errors import TrainingError
from ml.features.blocks import FACE_BLOCKS, AlignedFace, ChipFrame, DlibFaceBlock, GeometryBlock
from ml.features.dlib_face import CHIP_PADDING, CHIP_SIZE, DlibFaceBackbone, import_dlib
from ml.learning.options import is_vgg16


class FaceFeatures:
    """The extractor of a pipeline of face blocks: one alignment per photo, the blocks' features side by side.

    `network`: the face network the dlib-face block uses, when it is this version's own (fine-tuned).
    An Extractor whose every value is placed on the face, and whose chip can be occluded.
    """
    input_size = DlibFaceBackbone.input_size
    attributable, has_conv_maps, occludable = True, False, True

    def __init__(self, names, network=None):
        unknown = [name for name in names if name not in FACE_BLOCKS]
        if unknown or not names:
            raise TrainingError(f"Unknown face block(s) {', '.join(unknown) or '(none)'}; "
                                f"choose from {', '.join(FACE_BLOCKS)}.")
        self.aligner = DlibFaceBackbone()
        self.network = network
        self.blocks = [DlibFaceBlock(network) if name == DlibFaceBlock.name else FACE_BLOCKS[name]()
                       for name in names]
        self.name = "+".join(names)

    @property
    def block_sizes(self):
        return [block.size for block in self.blocks]

    @property
    def cache_ids(self):
        return [block.cache_id for block in self.blocks]

    @property
    def feature_size(self):
        return sum(self.block_sizes)

    def describe(self):
        return {"name": self.name, "blocks": [block.describe() for block in self.blocks],
                "input_size": self.input_size, "feature_size": self.feature_size,
                "weights": {"name": "dlib", "path": None, "sha256": None},
                "alignment": "dlib 5-point landmarks, face chip 150 px, padding 0.25"}

    def align(self, crops, reference=None):
        """Return an AlignedFace per crop; with `reference`, every crop is aligned on its landmarks."""
        shape = self.aligner.landmarks(np.ascontiguousarray(reference)) if reference is not None else None
        return [AlignedFace(np.ascontiguousarray(crop), self.aligner.align(crop, shape)) for crop in crops]

    def chip_frame(self, crop):
        """Return the ChipFrame of a crop: its chip is the very one `features` computes."""
        dlib, _ = import_dlib("Face alignment")
        crop = np.ascontiguousarray(crop)
        shape = self.aligner.landmarks(crop)
        details = dlib.get_face_chip_details(shape, size=CHIP_SIZE, padding=CHIP_PADDING)
        return ChipFrame(crop, self.aligner.align(crop, shape), details)

    def read(self, crop):
        """Return (the crop's ChipFrame, a Reading per block): the served features, and where each block read them."""
        frame = self.chip_frame(crop)
        face = AlignedFace(frame.crop, frame.chip)
        return frame, [block.read(face) for block in self.blocks]

    def occluded_features(self, frame, boxes, fill):
        """Return the features of a face for each box (x0, y0, x1, y1) of its chip filled in turn (None: none is).

        One alignment serves every box: the chip is filled directly, and where a block finds 68
        landmarks on the crop, the crop has the same region filled.
        """
        reads_crop = any(isinstance(block, GeometryBlock) for block in self.blocks)
        faces = []
        for box in boxes:
            if box is None:
                faces.append(AlignedFace(frame.crop, frame.chip))
                continue
            x0, y0, x1, y1 = box
            chip = frame.chip.copy()
            chip[y0:y1, x0:x1] = fill
            crop = frame.crop
            if reads_crop:
                crop = crop.copy()
                crop[frame.box_on_crop(box)] = fill
            faces.append(AlignedFace(crop, chip))
        return np.concatenate([np.asarray(block.features(faces), np.float32) for block in self.blocks], axis=1)

    def prepare(self, crops, prepared):
        """Compute the crops' features block by block (each loads what it needs); call `prepared()` after each."""
        faces = self.align(crops)
        for block in self.blocks:
            block.features(faces)
            prepared()

    def block_features(self, crops, reference=None):
        """Return one array per block for the crops (one alignment shared by the blocks)."""
        faces = self.align(crops, reference)
        if not faces:
            return [np.zeros((0, block.size), np.float32) for block in self.blocks]
        return [np.asarray(block.features(faces), np.float32) for block in self.blocks]

    def features(self, crops, reference=None):
        """Return the blocks' features of each crop side by side."""
        return np.concatenate(self.block_features(crops, reference), axis=1)

    def save(self, folder):
        """Save what the version needs beyond the packages' networks: a fine-tuned tail, if any."""
        return self.network.save_tail(folder) if self.network is not None else []

    @classmethod
    def load(cls, card, folder):
        from ml.features.dlib_resnet import TAIL_FILE, DlibResnet

        tuned = (folder / TAIL_FILE).is_file()
        return cls(card.blocks, DlibResnet.tuned_from(folder) if tuned else None)


def build_extractor(pipeline, options, pretrained_dirs=()):
    """Return the extractor of a pipeline ('dlib-face+hog', 'vgg16-imagenet', ...)."""
    names = pipeline.split("+")
    if is_vgg16(names[0]):
        from ml.features.vgg import VGGBackbone

        return VGGBackbone.build(names[0], options.weights, options.image_size, pretrained_dirs)
    return FaceFeatures(names)


def load_extractor(card, folder):
    """Load the extractor a saved model version was trained with (cards from before blocks too)."""
    blocks = card.blocks
    if is_vgg16(blocks[0]):
        from ml.features.vgg import VGGBackbone

        return VGGBackbone.load(card, folder)
    if blocks == ["dlib-face"] and card.pipeline is None:
        return DlibFaceBackbone()      # a version from before blocks: the descriptor without its mirror
    return FaceFeatures.load(card, folder)

