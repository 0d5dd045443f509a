"""A training area left on disk (cells.FileCells) gives the same grid chips and random
windows, bit for bit, as the same area in memory; held-out cells and allowed window
positions against brute-force loops over the cells."""
import numpy as np
import pytest

from maskrcnnlib.dataset import windows
from maskrcnnlib.dataset.cells import (AllowedOrigins, ArrayCells, FileCells, RectangleCells,
                                       any_cell, strips)
from maskrcnnlib.errors import DatasetError
from maskrcnnlib.tiling import tile_grid

TILE, OVERLAP = 64, 16


def scene(rows, cols, seed=0, objects=50, bands=3):
    rng = np.random.default_rng(seed)
    ids = np.zeros((rows, cols), np.int32)
    for cat in range(1, objects + 1):
        side = int(rng.integers(3, 15))
        row, col = int(rng.integers(0, rows - side)), int(rng.integers(0, cols - side))
        ids[row:row + side, col:col + side] = cat
    image = rng.normal(1000, 300, (rows, cols, bands)).astype(np.float32)
    return image, ids, {cat: 1 + cat % 3 for cat in range(1, objects + 1)}


def on_disk(folder, image, ids):
    """FileCells of the bands and ids written as r.out.bin writes them."""
    paths = []
    for band in range(image.shape[2]):
        path = folder / "band{}.bin".format(band)
        np.ascontiguousarray(image[:, :, band]).tofile(path)
        paths.append(path)
    ids.tofile(folder / "ids.bin")
    rows, cols = ids.shape
    return (FileCells(paths, rows, cols, np.float32),
            FileCells([folder / "ids.bin"], rows, cols, np.int32, stacked=False))


def area_of(image, ids, class_of, tile=TILE):
    rows, cols = (ids.rows, ids.cols) if hasattr(ids, "read") else ids.shape
    origins = [(t.row, t.col) for line in tile_grid(rows, cols, tile, OVERLAP) for t in line]
    area = windows.TrainingArea(image, ids, class_of, tile, origins, [], [], 4,
                                geography={"n": 0.0, "w": 0.0, "nsres": 1.0, "ewres": 1.0})
    area.chip_ids = [area.instances_in(r, c) for r, c in origins]
    area.chosen = list(range(len(origins)))
    return area


def assert_same(first, second):
    for a, b in zip(first, second):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shape", [(300, 410), (50, 40)])  # the second: smaller than a tile
def test_windows_from_disk_equal_windows_in_memory(tmp_path, shape):
    image, ids, class_of = scene(*shape)
    memory = area_of(image, ids, class_of)
    disk = area_of(*on_disk(tmp_path, image, ids), class_of)
    assert disk.streamed and not memory.streamed
    assert disk.chip_ids == memory.chip_ids and any(memory.chip_ids)
    for index in range(len(memory.origins)):
        assert_same(memory.chip(index), disk.chip(index))
    # windows at every offset, including ones reaching the region's edge
    for row in range(0, shape[0], 37):
        for col in range(0, shape[1], 53):
            assert_same(memory.window(row, col), disk.window(row, col))
    # the image cells themselves, against the arrays written
    cells = disk.image_cells.read(7, 11, 20, 30)
    np.testing.assert_array_equal(cells, image[7:27, 11:41])
    np.testing.assert_array_equal(disk.id_cells.read(0, 0, shape[0], shape[1]), ids)
    disk.close()
    assert disk.image_cells.files == [] and disk.id_cells.files == []


def test_random_windows_and_held_blocks_from_disk_equal_those_in_memory(tmp_path):
    image, ids, class_of = scene(400, 520, seed=3, objects=80)
    memory = area_of(image, ids, class_of)
    disk = area_of(*on_disk(tmp_path, image, ids), class_of)
    found = windows.grid_has_objects(memory)
    blocks = windows.held_out_blocks(found.shape, found, seed=4)
    trained = {}
    for name, area in (("memory", memory), ("disk", disk)):
        held, _ = windows.block_cells(area, blocks)
        training, validation = windows.split_area(area, held, "random", passes=30)
        rng = np.random.default_rng(9)
        trained[name] = ([training.load_random(i, rng) for i in range(40)], training.drawn,
                         [validation.load(i) for i in range(len(validation))])
    (samples, drawn, held_out), (disk_samples, disk_drawn, disk_held_out) = \
        trained["memory"], trained["disk"]
    assert drawn == disk_drawn and len(set(drawn)) > 30
    for first, second in zip(samples + held_out, disk_samples + disk_held_out):
        assert_same(first, second)


def test_rectangles_and_allowed_origins_against_brute_force():
    rows, cols, tile = 90, 130, 20
    rectangles = [(10, 15, 12, 30), (60, 100, 30, 30), (0, 0, 1, 1)]
    cells = RectangleCells(rectangles, rows, cols)
    brute = np.zeros((rows, cols), bool)
    for top, left, height, width in rectangles:
        for row in range(top, top + height):
            for col in range(left, left + width):
                brute[row, col] = True
    np.testing.assert_array_equal(cells.read(0, 0, rows, cols), brute)
    np.testing.assert_array_equal(cells.read(5, 95, 40, 50), brute[5:45, 95:130])
    for held in (cells, ArrayCells(brute)):
        allowed = AllowedOrigins(held, rows, cols, tile)
        expected = np.zeros((rows - tile + 1, cols - tile + 1), bool)
        for row in range(rows - tile + 1):
            for col in range(cols - tile + 1):
                expected[row, col] = not brute[row:row + tile, col:col + tile].any()
        np.testing.assert_array_equal(allowed.as_array(), expected)
        np.testing.assert_array_equal(allowed.row_counts, expected.sum(1))
        np.testing.assert_array_equal(allowed.row(61), expected[61])
    everywhere = AllowedOrigins(None, rows, cols, tile)
    assert everywhere.as_array().all() and everywhere.as_array().shape == expected.shape
    small = AllowedOrigins(None, 10, 12, tile)  # a region smaller than a tile: one window
    assert small.as_array().shape == (1, 1) and small.any()
    assert not AllowedOrigins(ArrayCells(np.ones((rows, cols), bool)), rows, cols, tile).any()


def test_strips_and_any_cell(tmp_path):
    values = np.zeros((600, 7), np.int32)
    values[555, 3] = 12
    path = tmp_path / "v.bin"
    values.tofile(path)
    source = FileCells([path], 600, 7, np.int32, stacked=False)
    rows = [first for first, _ in strips(source)]
    assert rows == [0, 256, 512]
    np.testing.assert_array_equal(np.concatenate([c for _, c in strips(source)]), values)
    assert any_cell(source)
    assert not any_cell(ArrayCells(np.zeros((600, 7), np.int32)))


def test_a_short_file_is_refused(tmp_path):
    path = tmp_path / "short.bin"
    np.zeros((10, 9), np.float32).tofile(path)
    with pytest.raises(DatasetError, match="short.bin holds 360 bytes, 10 x 10 cells need 400"):
        FileCells([path], 10, 10, np.float32)
