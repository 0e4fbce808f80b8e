"""The pretrained VGG16 weight files FaceDx knows, and where an operator or Keras keeps them (no TensorFlow here).

An operator copies a file into models/pretrained/ of the data folder; Keras keeps what it
downloaded in its cache. Checking for them needs no network and no TensorFlow.
"""
import os
from pathlib import Path

VGG16_NOTOP_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
VGG16_NOTOP_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
                   + VGG16_NOTOP_FILE)
VGG16_NOTOP_MD5 = "6d6bbae143d832006294945121d1f1fc"
# The widely used Keras conversion of VGG-Face (keras-vggface, VGG16 without its top).
VGGFACE_FILE = "rcmalli_vggface_tf_notop_vgg16.h5"


def find_pretrained(name, pretrained_dirs):
    """Return the path of an operator-supplied file in the pretrained folders, or None."""
    for folder in pretrained_dirs:
        candidate = Path(folder) / name
        if candidate.is_file():
            return candidate
    return None


def imagenet_present(pretrained_dirs):
    """Say whether the ImageNet weights are on this machine (supplied or in Keras's cache), without downloading."""
    cached = Path(os.environ.get("KERAS_HOME", "~/.keras")).expanduser()     # where Keras keeps downloads
    return find_pretrained(VGG16_NOTOP_FILE, pretrained_dirs) is not None \
        or (cached / "models" / VGG16_NOTOP_FILE).is_file()
