"""The process's shared face models, each loaded on first use: the Keras face network and the 68-point predictor."""
import functools

from ml.features.geometry import Landmarks68


def face_landmarks(crop):
    """Return dlib's 68 landmarks (x, y) of the face in the middle of a crop, with the process's one predictor."""
    return _landmarks68().points(crop)


@functools.cache
def face_network():
    """Return the process's one Keras face-recognition network (it reads its weights on first use)."""
    from ml.features.dlib_resnet import DlibResnet

    return DlibResnet()


@functools.cache
def _landmarks68():
    """Return the process's one 68-point predictor (it loads its model on first use, under its own lock)."""
    return Landmarks68()
