"""The rasters of a training area, held in memory or left on disk, read a window at a time.

A cell source has ``rows``, ``cols`` and ``read(row, col, height, width)``, which returns
the cells [row, row + height) x [col, col + width) as a new or borrowed array ([height,
width] for one raster, [height, width, bands] for a stack of them); ``close()`` lets go
of what it holds.

* ArrayCells: arrays in memory (the fast path of a small training area).
* FileCells: raw raster files on disk, one per band ([rows, cols] of a 4-byte type,
  row-major, the machine's byte order: what r.out.bin writes), read with pread into a
  window-sized array. Nothing of the file is mapped, so the process holds only the
  windows it reads (the kernel may keep the file in its page cache, which it gives back
  when memory runs short).
* RectangleCells: cells that are True inside some rectangles (held-out blocks), with no
  raster behind them.
* AllowedOrigins: where the north-west cell of a window may lie so that the window holds
  no held-out cell, one bit per position, computed a row of windows at a time.
"""
import os

import numpy as np

from maskrcnnlib.errors import DatasetError

# rows read at a time where a whole raster is scanned (instance ids present, statistics)
STRIP_ROWS = 256


class ArrayCells:
    """A [rows, cols] or [rows, cols, bands] array read by windows (views, not copies)."""

    def __init__(self, array):
        self.array = array
        self.rows, self.cols = array.shape[:2]

    def read(self, row, col, height, width):
        return self.array[row:row + height, col:col + width]

    def close(self):
        self.array = None


class FileCells:
    """Raw rasters on disk, read a window at a time.

    paths: one file per band, each rows x cols values of dtype (4 bytes, native order).
    stacked: read() returns [height, width, bands] (True) or, for one file, [height,
    width]. Raises DatasetError when a file is shorter than rows x cols values.
    """

    def __init__(self, paths, rows, cols, dtype, stacked=True):
        self.paths, self.rows, self.cols = list(paths), int(rows), int(cols)
        self.dtype, self.stacked = np.dtype(dtype), stacked
        if not stacked and len(self.paths) != 1:
            raise ValueError("one file unless stacked")
        expected = self.rows * self.cols * self.dtype.itemsize
        self.files = []
        try:
            for path in self.paths:
                size = os.path.getsize(path)
                if size < expected:
                    raise DatasetError("{} holds {} bytes, {} x {} cells need {}".format(
                        path, size, self.rows, self.cols, expected))
                self.files.append(os.open(path, os.O_RDONLY))
        except BaseException:
            self.close()
            raise

    def _read_band(self, handle, row, col, height, width, out):
        """Cells of one file into out [height, width] (C-contiguous)."""
        item = self.dtype.itemsize
        if width == self.cols:  # whole rows: one read
            spans = [(out.reshape(-1), (row * self.cols) * item)]
        else:
            spans = [(out[line], ((row + line) * self.cols + col) * item)
                     for line in range(height)]
        for target, offset in spans:
            view = memoryview(target).cast("B")
            done = 0
            while done < len(view):
                count = os.preadv(handle, [view[done:]], offset + done)
                if count <= 0:
                    raise DatasetError("{} ended before its {} x {} cells".format(
                        self.paths[self.files.index(handle)], self.rows, self.cols))
                done += count

    def read(self, row, col, height, width):
        height = max(0, min(height, self.rows - row))
        width = max(0, min(width, self.cols - col))
        bands = np.empty((len(self.files), height, width), self.dtype)
        if height and width:
            for band, handle in enumerate(self.files):
                self._read_band(handle, row, col, height, width, bands[band])
        if not self.stacked:
            return bands[0]
        return np.ascontiguousarray(np.moveaxis(bands, 0, 2))

    def close(self):
        for handle in self.files:
            os.close(handle)
        self.files = []


class RectangleCells:
    """bool cells, True inside rectangles [(row, col, height, width)] of a rows x cols
    raster."""

    def __init__(self, rectangles, rows, cols):
        self.rectangles = [tuple(int(v) for v in r) for r in rectangles]
        self.rows, self.cols = rows, cols

    def read(self, row, col, height, width):
        height = max(0, min(height, self.rows - row))
        width = max(0, min(width, self.cols - col))
        cells = np.zeros((height, width), bool)
        for top, left, tall, wide in self.rectangles:
            down, up = max(top, row), min(top + tall, row + height)
            start, end = max(left, col), min(left + wide, col + width)
            if down < up and start < end:
                cells[down - row:up - row, start - col:end - col] = True
        return cells

    def close(self):
        pass


def strips(source, rows=STRIP_ROWS):
    """(first row, cells of rows [first, first + rows)) over the whole source, in order."""
    for first in range(0, source.rows, rows):
        yield first, source.read(first, 0, min(rows, source.rows - first), source.cols)


def any_cell(source):
    """Whether any cell of the source is non-zero, reading a strip at a time."""
    return any(np.any(cells) for _, cells in strips(source))


class AllowedOrigins:
    """Where a window's north-west cell may lie: windows of tile_size that hold no held
    cell. Positions: [max(1, rows - T + 1), max(1, cols - T + 1)] (a region smaller
    than a tile has the one window at (0, 0)), one bit each.

    held: a cell source of the held cells (non-zero: held), or None (none held).
    row_counts: allowed positions per row of positions; row(i): bool of row i.
    Computed a row of positions at a time: per column, the held cells in the window's
    rows (kept up to date as the window moves down by one row), then per position
    whether any column under the window has one.
    """

    def __init__(self, held, rows, cols, tile_size):
        height, width = min(tile_size, rows), min(tile_size, cols)
        self.down, self.across = rows - height + 1, cols - width + 1
        self.packed = np.empty((self.down, (self.across + 7) // 8), np.uint8)
        self.row_counts = np.empty(self.down, np.int64)
        if held is None:
            self.packed[:] = np.packbits(np.ones(self.across, bool))
            self.row_counts[:] = self.across
            return
        per_column = np.zeros(cols, np.int64)
        for line in range(height):
            per_column += held.read(line, 0, 1, cols)[0] != 0
        for position in range(self.down):
            if position:
                per_column -= held.read(position - 1, 0, 1, cols)[0] != 0
                per_column += held.read(position + height - 1, 0, 1, cols)[0] != 0
            blocked = np.concatenate([[0], np.cumsum(per_column > 0)])
            free = blocked[width:width + self.across] == blocked[:self.across]
            self.row_counts[position] = int(free.sum())
            self.packed[position] = np.packbits(free)

    def row(self, index):
        """bool [positions across] of row `index` of positions."""
        return np.unpackbits(self.packed[index], count=self.across).astype(bool)

    def any(self):
        return bool(self.row_counts.sum())

    def as_array(self):
        """bool [down, across] (for small areas and tests)."""
        return np.unpackbits(self.packed, axis=1, count=self.across).astype(bool)
