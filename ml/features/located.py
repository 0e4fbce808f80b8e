"""Where a block's values come from: amounts per value spread as a density over the image they were read from.

A linear head scores a face as a sum over feature values. Each value of a face block is read from
one place of the face: a HOG value from its 16 px block of the chip, an LBP value from its grid
cell, a geometry value from one or two landmarks, a cell of the face network's 8 x 8 map from
its part of the chip. Spreading each value's share of the score over that place gives a map whose
sum is the score (a density: amount per pixel), so maps of different blocks add up.
"""
import cv2
import numpy as np


def cell_density(amounts, height, width):
    """Spread a grid of amounts [rows, columns] evenly over the pixels of each cell of a height x width image.

    Pixel (y, x) lies in cell (y * rows // height, x * columns // width), as LBP's grid divides an
    image; the density sums to the amounts' sum exactly.
    """
    amounts = np.asarray(amounts, np.float64)
    rows, columns = amounts.shape
    row_of = np.arange(height) * rows // height
    column_of = np.arange(width) * columns // width
    pixels = np.bincount(row_of, minlength=rows)[:, None] * np.bincount(column_of, minlength=columns)[None, :]
    return (amounts / np.maximum(pixels, 1))[row_of[:, None], column_of[None, :]]


def window_density(amounts, window, stride, size):
    """Spread amounts [x blocks, y blocks] of overlapping square windows (HOG's blocks) over a size x size image."""
    density = np.zeros((size, size))
    share = np.asarray(amounts, np.float64) / (window * window)
    for bx in range(share.shape[0]):
        for by in range(share.shape[1]):
            density[by * stride:by * stride + window, bx * stride:bx * stride + window] += share[bx, by]
    return density


def point_density(amounts, points, shape, sigma):
    """Spread an amount at each point (x, y) as a Gaussian of `sigma` px over an image of `shape`.

    Each amount is split between the 4 pixels around its point, then the image is blurred: the sum
    is kept, but for what the blur carries past the image's edge.
    """
    height, width = shape[:2]
    density = np.zeros((height, width))
    for amount, (x, y) in zip(amounts, points):
        x0, y0 = int(np.floor(x)), int(np.floor(y))
        fx, fy = x - x0, y - y0
        for dy, dx, share in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)), (1, 0, (1 - fx) * fy),
                              (1, 1, fx * fy)):
            if 0 <= y0 + dy < height and 0 <= x0 + dx < width:
                density[y0 + dy, x0 + dx] += amount * share
    return cv2.GaussianBlur(density, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT)
