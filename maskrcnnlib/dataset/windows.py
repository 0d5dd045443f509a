"""Training windows cut from one training area: grid chips, random windows, and the
cells held out for validation.

Pure numpy; the GRASS side (maskrcnnlib.grassio.chips.read_training_area) reads the
area, into memory or onto disk (maskrcnnlib.dataset.cells): either way a window is read
when it is loaded, and nothing here holds a whole-area array of more than one bit a cell.
Cells are [row (y, south-down), col (x, east-right)] of the region; a window is
(row, col) of its north-west cell and is tile_size x tile_size, padded with 0 / False
beyond the region's edge (only when the region is smaller than a tile).

Honest validation: a set of *held* cells (spatial blocks of the chip grid, or the user's
validation areas) validates through the grid chips that lie wholly inside it; no training
window, grid chip or random, contains a held cell.
"""
import math

import numpy as np

from maskrcnnlib.dataset.cells import AllowedOrigins, ArrayCells, FileCells, RectangleCells
from maskrcnnlib.errors import DatasetError

HELD_OUT_SHARE = 0.1
# above this many held-out chips, the share is split into about four blocks
ONE_BLOCK_UP_TO = 36
# a random window without objects is kept with probability negatives_share; after this
# many draws without objects in a row, the last one is kept
EMPTY_DRAWS = 20
# windows drawn at random that are recorded (for training_windows.txt)
RECORDED_WINDOWS = 10000


class TrainingArea:
    """The image and objects of a training area, and the chip grid over it.

    image: the bands, float32 [rows, cols, bands]; ids: instance ids, int32 [rows, cols]
    (0: none); each an array (held in memory) or a cell source (maskrcnnlib.dataset.cells:
    FileCells leaves them on disk and reads a window at a time). class_of: {instance id:
    class id 1..K}; origins: [(row, col)] of the grid chips, row-major; chip_ids: per
    grid chip, the sorted instance ids it keeps (those with at least min_cells cells in
    it); chosen: indices of the grid chips kept for training (with objects, plus some
    without); geography: a gs.region()-like dict (n, w, nsres, ewres) for map
    coordinates, or None. close() lets go of the cells (and of `cleanup`, a callable
    that removes what the area's files were written to).
    """

    def __init__(self, image, ids, class_of, tile_size, origins, chip_ids, chosen,
                 min_cells, geography=None, cleanup=None):
        self.image_cells = image if hasattr(image, "read") else ArrayCells(image)
        self.id_cells = ids if hasattr(ids, "read") else ArrayCells(ids)
        self.class_of = class_of
        self.tile_size, self.origins, self.chip_ids = tile_size, list(origins), chip_ids
        self.chosen, self.min_cells, self.geography = list(chosen), min_cells, geography
        self.rows, self.cols = self.id_cells.rows, self.id_cells.cols
        self.bands = self.image_cells.read(0, 0, 1, 1).shape[2]
        self.streamed = isinstance(self.id_cells, FileCells)
        self.cleanup = cleanup

    def close(self):
        """Close the cell sources and remove their files (idempotent)."""
        self.image_cells.close()
        self.id_cells.close()
        cleanup, self.cleanup = self.cleanup, None
        if cleanup:
            cleanup()

    def window_size(self, row, col):
        """(height, width) of the region's cells inside the window at (row, col)."""
        return min(self.tile_size, self.rows - row), min(self.tile_size, self.cols - col)

    def window_ids(self, row, col):
        """Instance ids int32 [height, width] of the region's cells inside the window."""
        return self.id_cells.read(row, col, *self.window_size(row, col))

    def instances_of(self, cells):
        """Sorted ids of the instances with at least min_cells cells among `cells`."""
        ids, counts = np.unique(cells[cells > 0], return_counts=True)
        return [int(cat) for cat in ids[counts >= self.min_cells]]

    def instances_in(self, row, col):
        """Sorted ids of the instances with at least min_cells cells in the window."""
        return self.instances_of(self.window_ids(row, col))

    def window(self, row, col, ids=None, cells=None):
        """(image [T, T, bands] float32, masks [T, T, N] bool, class_ids [N] int32) of the
        window at (row, col); ids: its instances (default: instances_in); cells: its
        window_ids when the caller has read them."""
        cells = self.window_ids(row, col) if cells is None else cells
        ids = self.instances_of(cells) if ids is None else ids
        size, (height, width) = self.tile_size, self.window_size(row, col)
        image = np.zeros((size, size, self.bands), np.float32)
        image[:height, :width] = self.image_cells.read(row, col, height, width)
        masks = np.zeros((size, size, len(ids)), bool)
        for slot, cat in enumerate(ids):
            masks[:height, :width, slot] = cells == cat
        return image, masks, np.array([self.class_of[cat] for cat in ids], np.int32)

    def chip(self, index):
        """The sample of grid chip `index`."""
        row, col = self.origins[index]
        return self.window(row, col, self.chip_ids[index])

    def chip_name(self, index):
        """The id of grid chip `index`: r<row>_c<col> of its north-west cell."""
        return "r{:06d}_c{:06d}".format(*self.origins[index])

    def extent(self, row, col, height, width):
        """(north, south, east, west) in map coordinates of cells [row, +height) x [col, +width)."""
        geo = self.geography
        north = float(geo["n"]) - row * float(geo["nsres"])
        west = float(geo["w"]) + col * float(geo["ewres"])
        return (north, north - height * float(geo["nsres"]),
                west + width * float(geo["ewres"]), west)


class GridChips:
    """Grid chips of a TrainingArea as a dataset: len, image_ids, load(i)."""

    def __init__(self, area, indices):
        self.area, self.indices = area, list(indices)
        self.image_ids = [area.chip_name(i) for i in self.indices]

    def __len__(self):
        return len(self.indices)

    def load(self, index):
        return self.area.chip(self.indices[index])


class RandomWindows:
    """Windows at random positions of a TrainingArea, none containing a held cell.

    allowed: a cells.AllowedOrigins: where a window's north-west cell may be. passes:
    windows per pass (len). negatives_share: the chance that a drawn window without
    objects is kept (see EMPTY_DRAWS).
    load_random(index, rng) draws a window with a numpy Generator (the training stream
    passes its own); load(index) draws one with a Generator seeded by index, for callers
    that need a fixed sample. The first RECORDED_WINDOWS draws are kept in `drawn` as
    (row, col).
    """

    def __init__(self, area, allowed, passes, negatives_share=0.1):
        self.area, self.allowed, self.passes = area, allowed, max(1, int(passes))
        self.negatives_share = negatives_share
        self.row_counts = allowed.row_counts
        self.row_weights = self.row_counts / self.row_counts.sum()
        self.image_ids = ["random{:06d}".format(i + 1) for i in range(self.passes)]
        self.drawn = []

    def __len__(self):
        return self.passes

    def load(self, index):
        return self.load_random(index, np.random.default_rng(index), record=False)

    def draw_origin(self, rng):
        """(row, col) of an allowed window, uniform over the allowed positions."""
        row = int(rng.choice(len(self.row_counts), p=self.row_weights))
        cols = np.flatnonzero(self.allowed.row(row))
        return row, int(cols[rng.integers(len(cols))])

    def load_random(self, index, rng, record=True):
        area = self.area
        for _ in range(EMPTY_DRAWS):
            row, col = self.draw_origin(rng)
            cells = area.window_ids(row, col)
            ids = area.instances_of(cells)
            if ids or rng.random() < self.negatives_share:
                break
        if record and len(self.drawn) < RECORDED_WINDOWS:
            self.drawn.append((row, col))
        return area.window(row, col, ids, cells)


def as_cells(held):
    """A cell source of held cells: held itself, or an array wrapped."""
    return held if hasattr(held, "read") else ArrayCells(np.asarray(held))


def allowed_origins(held, rows, cols, tile_size):
    """cells.AllowedOrigins: windows that contain no held cell; held: a bool array or a
    cell source (non-zero: held), or None."""
    return AllowedOrigins(None if held is None else as_cells(held), rows, cols, tile_size)


def held_out_blocks(grid_shape, has_objects, share=HELD_OUT_SHARE, seed=None):
    """Blocks of grid chips held out: [(first tile row, first tile col, tile rows, tile cols)].

    grid_shape: (tile rows, tile cols) of the chip grid; has_objects: bool [tile rows,
    tile cols], whether a grid chip holds objects. The grid is cut into a lattice of
    k x k chip blocks (edge blocks smaller); blocks holding objects are drawn at random
    (seed None: seed 0, so a resumed run holds out the same blocks) until about `share`
    of the chips are held: k = ceil(sqrt(target)), one block, when the target is at most
    ONE_BLOCK_UP_TO chips, else k = ceil(sqrt(target / 4)), about four blocks.
    Raises DatasetError when the grid has a single chip or no block holds objects.
    """
    tile_rows, tile_cols = grid_shape
    total = tile_rows * tile_cols
    if total < 2:
        raise DatasetError("-s needs a training area of at least 2 chips to hold out a "
                           "block of them; the region holds 1 chip: enlarge the region or "
                           "lower tile_size, or give validation_map")
    target = max(1, int(math.floor(share * total + 0.5)))
    side = math.ceil(math.sqrt(target if target <= ONE_BLOCK_UP_TO else target / 4))
    side = max(1, min(side, max(tile_rows, tile_cols) - 1))
    blocks = []
    for row in range(0, tile_rows, side):
        for col in range(0, tile_cols, side):
            height, width = min(side, tile_rows - row), min(side, tile_cols - col)
            if has_objects[row:row + height, col:col + width].any():
                blocks.append((row, col, height, width))
    if not blocks:
        raise DatasetError("No grid chip holds objects: nothing to validate on")
    rng = np.random.default_rng(0 if seed is None else int(seed) & 0xFFFFFFFFFFFFFFFF)
    held, count = [], 0
    for index in rng.permutation(len(blocks)).tolist():
        size = blocks[index][2] * blocks[index][3]
        if held and abs(count + size - target) >= abs(count - target):
            break
        held.append(blocks[index])
        count += size
    return sorted(held)


def split_area(area, held, sampling="grid", passes=None, negatives_share=0.1):
    """(training dataset, validation GridChips) of a TrainingArea and its held cells.

    held: the cells held out, a bool [rows, cols] array or a cell source (non-zero:
    held). Validation: the chosen grid chips wholly inside held cells. Training: with
    sampling "grid", the chosen grid chips without a held cell; with "random",
    RandomWindows over the windows without a held cell (passes: windows per pass,
    default the number of grid training chips).
    Raises DatasetError naming what is missing (no validation chip, none with objects,
    no room or no objects left for training).
    """
    held = as_cells(held)
    inside, outside = [], []
    for index in area.chosen:
        row, col = area.origins[index]
        height, width = area.window_size(row, col)
        count = int(np.count_nonzero(held.read(row, col, height, width)))
        if count == height * width:
            inside.append(index)
        elif count == 0:
            outside.append(index)
    if not inside:
        raise DatasetError("No training chip of {0} x {0} cells lies wholly inside the "
                           "held-out areas: they must be larger than a chip".format(
                               area.tile_size))
    if not any(area.chip_ids[index] for index in inside):
        raise DatasetError("The held-out areas hold no objects of the training map: "
                           "nothing to validate on")
    validation = GridChips(area, inside)
    if sampling == "random":
        allowed = allowed_origins(held, area.rows, area.cols, area.tile_size)
        if not allowed.any():
            raise DatasetError("No window of {0} x {0} cells outside the held-out areas "
                               "is left for training".format(area.tile_size))
        return RandomWindows(area, allowed, passes or len(outside),
                             negatives_share), validation
    if not any(area.chip_ids[index] for index in outside):
        raise DatasetError("No training chip with objects lies outside the held-out areas "
                           "(chips touching them do not train): enlarge the region, or give "
                           "sampling=random")
    return GridChips(area, outside), validation


def block_cells(area, blocks):
    """(cells.RectangleCells of the held cells, [(row, col, height, width)] cell windows)
    of blocks of the chip grid given as held_out_blocks returns them."""
    row_starts = sorted({row for row, _ in area.origins})
    col_starts = sorted({col for _, col in area.origins})
    windows = []
    for first_row, first_col, tile_rows, tile_cols in blocks:
        top, left = row_starts[first_row], col_starts[first_col]
        bottom = min(area.rows, row_starts[first_row + tile_rows - 1] + area.tile_size)
        right = min(area.cols, col_starts[first_col + tile_cols - 1] + area.tile_size)
        windows.append((top, left, bottom - top, right - left))
    return RectangleCells(windows, area.rows, area.cols), windows


def grid_has_objects(area):
    """bool [tile rows, tile cols]: whether each grid chip holds objects."""
    row_starts = sorted({row for row, _ in area.origins})
    col_starts = sorted({col for _, col in area.origins})
    found = np.zeros((len(row_starts), len(col_starts)), bool)
    for (row, col), ids in zip(area.origins, area.chip_ids):
        found[row_starts.index(row), col_starts.index(col)] = bool(ids)
    return found
