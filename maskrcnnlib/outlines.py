"""Orthogonal ("squared") object masks for buildings (flag -o of i.ann.maskrcnn.detect).

Pure numpy/scipy on bool cell masks, no GRASS. A mask ``cells[y, x]`` has rows
y from north to south and columns x from west to east, in cells; a cell centre
is at (x + 0.5, y + 0.5). The squared mask keeps only outlines parallel or
perpendicular to the object's main direction; the writer then straightens the
cell staircase along them (v.generalize douglas, two cells), so the areas come
out with right-angled corners.
"""
import numpy as np
from scipy import ndimage

# directions tried for the object's main direction, degrees (a rectangle repeats every 90)
ANGLES = np.arange(0.0, 90.0, 1.0)
# a block of the squared outline: this share of the side of a square of the object's area
BLOCK_SHARE = 0.2


def main_direction(cells):
    """Degrees in [0, 90): direction of the object's minimum-area bounding rectangle.

    Measured from the x axis (east) towards y (south, down the rows), over the
    outline cells' centres; an axis-aligned object gives 0.
    """
    edge = cells & ~ndimage.binary_erosion(cells)
    y, x = np.nonzero(edge)
    if y.size < 3:
        return 0.0
    radians = np.radians(ANGLES)[:, None]
    along = x * np.cos(radians) + y * np.sin(radians)  # [angles, cells]
    across = -x * np.sin(radians) + y * np.cos(radians)
    # +1: the centres' extent misses half a cell on each side
    boxes = (np.ptp(along, axis=1) + 1) * (np.ptp(across, axis=1) + 1)
    return float(ANGLES[np.argmin(boxes)])


def _block_majority(turned):
    """turned (bool [rows, cols]) as blocks: its box cut into about BLOCK_SHARE of its
    side per block, each block wholly set when at least half of it is set."""
    rows, cols = np.nonzero(turned)
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    block = max(2.0, np.sqrt(rows.size) * BLOCK_SHARE)
    n_rows = max(1, int(round((r1 - r0) / block)))
    n_cols = max(1, int(round((c1 - c0) / block)))
    # block of each row and column of the box: equal parts, so the box stays exact
    row_block = (np.arange(r1 - r0) * n_rows) // (r1 - r0)
    col_block = (np.arange(c1 - c0) * n_cols) // (c1 - c0)
    index = row_block[:, None] * n_cols + col_block[None, :]
    box = turned[r0:r1, c0:c1]
    share = (np.bincount(index.ravel(), box.ravel(), minlength=n_rows * n_cols)
             / np.bincount(index.ravel(), minlength=n_rows * n_cols))
    out = np.zeros_like(turned)
    out[r0:r1, c0:c1] = share[index] >= 0.5
    return out


def square_mask(cells, angle=None):
    """cells (bool [h, w]) with outlines only along ``angle`` and angle + 90 degrees.

    The mask is resampled (nearest cell) onto a grid of the same cell size
    turned by ``angle`` (default: main_direction); there its box is cut into
    blocks of about a fifth of the object's side, and a block belongs to the
    object when half of it does (the box's edges stay where they are; notches,
    bumps and cut corners smaller than a block go, larger wings stay, with right
    angles). The result is resampled back. Returns bool [h, w]; cells outside
    the input's box stay False.
    """
    cells = np.asarray(cells, bool)
    if np.count_nonzero(cells) < 4:
        return cells.copy()
    if angle is None:
        angle = main_direction(cells)
    pad = 2
    padded = np.pad(cells, pad)
    height, width = padded.shape
    cos, sin = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    # the padded box's corners in the turned frame (u along angle, v across it)
    corner_x = np.array([0, width, 0, width], float)
    corner_y = np.array([0, 0, height, height], float)
    u_corners = corner_x * cos + corner_y * sin
    v_corners = -corner_x * sin + corner_y * cos
    u0, v0 = np.floor(u_corners.min()), np.floor(v_corners.min())
    columns = int(np.ceil(u_corners.max() - u0))
    rows = int(np.ceil(v_corners.max() - v0))
    # centres of the turned grid's cells, back in the mask's x/y
    v, u = np.mgrid[:rows, :columns] + 0.5
    u, v = u + u0, v + v0
    x, y = u * cos - v * sin, u * sin + v * cos
    turned = ndimage.map_coordinates(padded.astype(np.uint8), [y - 0.5, x - 0.5], order=0,
                                     cval=0).astype(bool)
    if not turned.any():
        return cells.copy()
    turned = _block_majority(turned)
    # centres of the mask's cells, in the turned grid
    y, x = np.mgrid[:height, :width] + 0.5
    u, v = x * cos + y * sin - u0, -x * sin + y * cos - v0
    back = ndimage.map_coordinates(turned.astype(np.uint8), [v - 0.5, u - 0.5], order=0,
                                   cval=0).astype(bool)
    return back[pad:-pad, pad:-pad]
