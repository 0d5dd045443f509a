"""Held-out blocks, grid chips and random windows of a training area (pure numpy): no
held-out cell inside any training window, checked directly on the cell windows."""
import numpy as np
import pytest

from maskrcnnlib.dataset import windows
from maskrcnnlib.errors import DatasetError
from maskrcnnlib.tiling import tile_grid

TILE, OVERLAP = 64, 16


def make_area(rows=400, cols=520, objects=60, seed=0):
    """A TrainingArea with square objects of 6-12 cells scattered over it."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((rows, cols), np.int32)
    for cat in range(1, objects + 1):
        side = int(rng.integers(6, 13))
        row, col = int(rng.integers(0, rows - side)), int(rng.integers(0, cols - side))
        ids[row:row + side, col:col + side] = cat
    image = rng.uniform(0, 255, (rows, cols, 3)).astype(np.float32)
    origins = [(t.row, t.col) for line in tile_grid(rows, cols, TILE, OVERLAP) for t in line]
    area = windows.TrainingArea(image, ids, {cat: 1 + cat % 2 for cat in range(1, objects + 1)},
                                TILE, origins, [], [], 4,
                                geography={"n": 1000.0, "w": 500.0, "nsres": 2.0,
                                           "ewres": 2.0})
    area.chip_ids = [area.instances_in(r, c) for r, c in origins]
    area.chosen = list(range(len(origins)))
    return area


def held_cells_in(held, row, col):
    if hasattr(held, "read"):
        held = held.read(0, 0, held.rows, held.cols)
    return int(held[row:row + TILE, col:col + TILE].sum())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_held_out_blocks_keep_training_chips_off_their_cells(seed):
    area = make_area(seed=seed)
    found = windows.grid_has_objects(area)
    blocks = windows.held_out_blocks(found.shape, found, seed=seed)
    held, extents = windows.block_cells(area, blocks)
    training, validation = windows.split_area(area, held, "grid")
    held = held.read(0, 0, area.rows, area.cols)
    for index in training.indices:
        assert held_cells_in(held, *area.origins[index]) == 0
    for index in validation.indices:
        assert held_cells_in(held, *area.origins[index]) == TILE * TILE
    assert any(area.chip_ids[i] for i in validation.indices)
    # about 10 % of the chips, in contiguous blocks of the grid
    held_chips = sum(h * w for _, _, h, w in blocks)
    assert 0.05 * len(area.origins) <= held_chips <= 0.2 * len(area.origins)
    assert len(validation) == held_chips
    assert set(training.indices).isdisjoint(validation.indices)
    for row, col, height, width in extents:
        assert held[row:row + height, col:col + width].all()
    assert held.sum() == sum(h * w for _, _, h, w in extents)  # blocks do not overlap


def test_blocks_follow_the_seed_and_none_is_fixed():
    area = make_area()
    found = windows.grid_has_objects(area)
    assert windows.held_out_blocks(found.shape, found, seed=None) == \
        windows.held_out_blocks(found.shape, found, seed=None)
    draws = {tuple(windows.held_out_blocks(found.shape, found, seed=s)) for s in range(6)}
    assert len(draws) > 1


def test_blocks_hold_objects_and_small_grids_get_one_block():
    found = np.zeros((3, 3), bool)
    found[2, 2] = True
    assert windows.held_out_blocks((3, 3), found, seed=5) == [(2, 2, 1, 1)]
    with pytest.raises(DatasetError, match="No grid chip holds objects"):
        windows.held_out_blocks((3, 3), np.zeros((3, 3), bool))
    with pytest.raises(DatasetError, match="at least 2 chips"):
        windows.held_out_blocks((1, 1), np.ones((1, 1), bool))


def test_random_windows_avoid_held_cells_and_differ():
    area = make_area()
    held = np.zeros((area.rows, area.cols), bool)
    held[100:260, 150:330] = True  # a user's validation area
    training, validation = windows.split_area(area, held, "random", passes=50)
    assert isinstance(training, windows.RandomWindows) and len(training) == 50
    rng = np.random.default_rng(3)
    samples = [training.load_random(i, rng) for i in range(300)]
    assert len(set(training.drawn)) > 250  # new positions, not a fixed grid
    for row, col in training.drawn:
        assert 0 <= row <= area.rows - TILE and 0 <= col <= area.cols - TILE
        assert held_cells_in(held, row, col) == 0
    # windows touching held cells are allowed right up to them
    assert min(abs(col + TILE - 150) for row, col in training.drawn
               if 100 - TILE < row < 260) < 20
    with_objects = sum(1 for _, masks, _ in samples if masks.shape[2])
    assert with_objects > 0.8 * len(samples)  # empty windows mostly redrawn
    image, masks, class_ids = samples[0]
    row, col = training.drawn[0]
    np.testing.assert_array_equal(image, area.image_cells.array[row:row + TILE,
                                                                col:col + TILE])
    for slot, class_id in enumerate(class_ids):
        cells = area.id_cells.array[row:row + TILE, col:col + TILE][masks[:, :, slot]]
        assert len(np.unique(cells)) == 1 and area.class_of[int(cells[0])] == class_id
    for index in validation.indices:
        assert held_cells_in(held, *area.origins[index]) == TILE * TILE


def test_errors_name_the_problem():
    area = make_area()
    held = np.zeros((area.rows, area.cols), bool)
    held[:30, :30] = True
    with pytest.raises(DatasetError, match="wholly inside the held-out areas"):
        windows.split_area(area, held)
    empty = make_area(objects=0)
    empty.chip_ids[0] = []
    held[:64, :64] = True
    with pytest.raises(DatasetError, match="hold no objects"):
        windows.split_area(empty, held)
    everything = np.ones((area.rows, area.cols), bool)
    with pytest.raises(DatasetError, match="outside the held-out areas"):
        windows.split_area(area, everything, "random")


def test_extent_in_map_coordinates():
    area = make_area()
    assert area.extent(10, 20, 64, 32) == (980.0, 852.0, 604.0, 540.0)
