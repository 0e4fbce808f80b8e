"""Histograms of oriented gradients of an aligned face chip, as in the reference study's baseline."""
import cv2
import numpy as np

HOG_SIZE = 128
HOG_BLOCK, HOG_STRIDE = 16, 8
# 16 px blocks of 2x2 cells of 8 px, 9 orientations: the classic Dalal-Triggs layout, 8100 values.
# Each block is normalised on its own: a value tells of its block, not of one cell.
_HOG = cv2.HOGDescriptor((HOG_SIZE, HOG_SIZE), (HOG_BLOCK, HOG_BLOCK), (HOG_STRIDE, HOG_STRIDE), (8, 8), 9)


def hog_descriptor(grey):
    """Return the HOG descriptor of a greyscale face chip, resized to HOG_SIZE."""
    resized = cv2.resize(np.ascontiguousarray(grey), (HOG_SIZE, HOG_SIZE), interpolation=cv2.INTER_AREA)
    return _HOG.compute(resized).ravel()


def hog_blocks(values):
    """Return a descriptor's values summed per block, as [x blocks, y blocks] (OpenCV lists blocks by column)."""
    side = (HOG_SIZE - HOG_BLOCK) // HOG_STRIDE + 1
    return np.asarray(values, np.float64).reshape(side, side, -1).sum(axis=2)
