"""Backbones: how a face crop becomes a feature vector.

Every backbone has `name`, `input_size`, `feature_size`, `fine_tunable`, `cache_id` (None when
its features must not be cached), `describe()` for the model card, `features(crops)` for
uint8 face crops, `save(folder)` and `load(card, folder)` for model versions.
"""
from ml.backbones.dlib_face import DlibFaceBackbone
from ml.backbones.vgg import (VGG16_NOTOP_FILE, VGGFACE_FILE, VGGBackbone, find_pretrained,
                              imagenet_present)
from ml.errors import TrainingError

# Strongest first, after the reference study: face-recognition features beat ImageNet ones.
BACKBONES = ("vggface", "dlib-face", "vgg16-imagenet")


def build_backbone(name, weights="pretrained", image_size=224, pretrained_dirs=()):
    """Build backbone `name`; `weights` and `image_size` apply to the VGG16 backbones."""
    if name == "dlib-face":
        return DlibFaceBackbone()
    if name in ("vgg16-imagenet", "vggface"):
        return VGGBackbone.build(name, weights, image_size, pretrained_dirs)
    raise TrainingError(f"Unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}.")


def load_backbone(card, folder):
    """Load the backbone a saved model version was trained with."""
    kind = DlibFaceBackbone if card["backbone"]["name"] == "dlib-face" else VGGBackbone
    return kind.load(card, folder)


def availability(pretrained_dirs):
    """Return {backbone: None if it can be used here, else why not}, without downloading anything."""
    where = pretrained_dirs[0] if pretrained_dirs else "models/pretrained/"
    reasons = {
        "vggface": None if find_pretrained(VGGFACE_FILE, pretrained_dirs)
        else f"VGG-Face weights not present: copy {VGGFACE_FILE} into {where}",
        "dlib-face": None,
        "vgg16-imagenet": None if imagenet_present(pretrained_dirs)
        else f"ImageNet weights not present: copy {VGG16_NOTOP_FILE} into {where} (or let Keras download them)",
    }
    try:
        import dlib  # noqa: F401
        import face_recognition_models  # noqa: F401
    except ImportError:
        reasons["dlib-face"] = "the dlib-bin and face-recognition-models packages are not installed"
    for block in ("hog", "lbp", "geometry"):        # they read the face aligned on dlib's landmarks
        reasons[block] = reasons["dlib-face"]
    return reasons


def default_backbone(pretrained_dirs):
    """Return the strongest backbone that can be used on this machine."""
    reasons = availability(pretrained_dirs)
    return next((name for name in BACKBONES if reasons[name] is None), "vgg16-imagenet")
