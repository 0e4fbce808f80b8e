"""The networks behind the feature blocks (dlib's face ResNet, VGG16) and whether they can run here."""
from ml.features.pretrained import VGG16_NOTOP_FILE, VGGFACE_FILE, find_pretrained, imagenet_present


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


def unavailable_pipelines(pipelines, pretrained_dirs):
    """Return {pipeline: why it cannot run here} for each of `pipelines` that has a block which cannot."""
    reasons = availability(pretrained_dirs)
    found = {}
    for pipeline in pipelines:
        why = [reasons[block] for block in pipeline.split("+") if reasons[block]]
        if why:
            found[pipeline] = why[0]
    return found
