"""Local binary patterns: the texture of a face as histograms of uniform LBP codes on a grid of cells.

Ojala, Pietikäinen and Mäenpää's LBP(8,1) with "u2" uniform codes, as used for faces by Ahonen,
Hadid and Pietikäinen (2006); the square root of each normalised histogram (Hellinger) lets a
Euclidean or linear model compare histograms as they should be compared.
"""
import numpy as np

LBP_BINS = 59            # 58 uniform codes (at most 2 bit transitions around the circle) + 1 for all others
# The 8 neighbours at radius 1 in circular order, so that bit transitions follow the circle.
_NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))


def _uniform_classes():
    """Return the table mapping each of the 256 codes to its uniform class (0-57) or 58."""
    codes = np.arange(256)
    rotated = ((codes << 1) | (codes >> 7)) & 0xFF
    transitions = np.array([bin(change).count("1") for change in codes ^ rotated])
    uniform = transitions <= 2
    table = np.full(256, LBP_BINS - 1, dtype=np.intp)
    table[uniform] = np.arange(uniform.sum())
    return table


_CLASSES = _uniform_classes()


def lbp_codes(grey):
    """Return the LBP(8,1) code of every inner pixel of a greyscale image (a neighbour >= the centre sets its bit)."""
    grey = np.asarray(grey, dtype=np.int16)
    height, width = grey.shape
    centre = grey[1:-1, 1:-1]
    codes = np.zeros(centre.shape, dtype=np.uint8)
    for bit, (dy, dx) in enumerate(_NEIGHBOURS):
        codes |= (grey[1 + dy:height - 1 + dy, 1 + dx:width - 1 + dx] >= centre).astype(np.uint8) << bit
    return codes


def lbp_histograms(grey, grid=7):
    """Return the Hellinger-normalised uniform LBP histograms of grid x grid cells, concatenated (float32)."""
    classes = _CLASSES[lbp_codes(grey)]
    height, width = classes.shape
    if min(height, width) < grid:
        raise ValueError(f"An image of {grey.shape} is too small for a {grid}x{grid} LBP grid.")
    cell_rows = np.arange(height) * grid // height
    cell_cols = np.arange(width) * grid // width
    cells = cell_rows[:, None] * grid + cell_cols[None, :]
    counts = np.bincount((cells * LBP_BINS + classes).ravel(), minlength=grid * grid * LBP_BINS)
    counts = counts.reshape(grid * grid, LBP_BINS).astype(np.float64)
    return np.sqrt(counts / counts.sum(axis=1, keepdims=True)).astype(np.float32).ravel()
