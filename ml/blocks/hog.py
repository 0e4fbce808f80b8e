"""Histograms of oriented gradients of an aligned face chip, as in the reference study's baseline."""
import cv2
import numpy as np

HOG_SIZE = 128
# 16 px blocks of 2x2 cells of 8 px, 9 orientations: the classic Dalal-Triggs layout, 8100 values.
_HOG = cv2.HOGDescriptor((HOG_SIZE, HOG_SIZE), (16, 16), (8, 8), (8, 8), 9)


def hog_descriptor(grey):
    """Return the HOG descriptor of a greyscale face chip, resized to HOG_SIZE."""
    resized = cv2.resize(np.ascontiguousarray(grey), (HOG_SIZE, HOG_SIZE), interpolation=cv2.INTER_AREA)
    return _HOG.compute(resized).ravel()
