"""Tile grid geometry and the merging of views across tile seams (maskrcnnlib.tiling).

References are independent of the code under test: hand-computed offsets, and
scenes of known objects (full-region masks) from which a synthetic "detector"
returns for each tile the clipped objects it can see.
"""
import numpy as np
import pytest

from maskrcnnlib.errors import ConfigError
from maskrcnnlib.tiling import (Instance, SeamMerger, Tile, instances_from_tile, tile_grid,
                               tiles_meeting)

# ---------------------------------------------------------------- helpers


def rect(shape, rows, cols):
    mask = np.zeros(shape, bool)
    mask[rows[0]:rows[1], cols[0]:cols[1]] = True
    return mask


def disk(shape, center, radius):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius ** 2


def paste(instance, shape):
    """An Instance as a full-region mask (tests only; the library never makes one)."""
    full = np.zeros(shape, bool)
    full[instance.row0:instance.row1, instance.col0:instance.col1] = instance.mask
    return full


def tiles_seeing(mask, grid):
    return [t for row in grid for t in row
            if mask[t.row:t.row_end, t.col:t.col_end].any()]


def detect(grid, objects, tile_size, rng, core_margin=0, shape=None, split=False):
    """Synthetic detector: per tile row, the views each tile returns for `objects`.

    objects: list of (class_id, full-region mask). Each tile returns, in random
    order and padded to tile_size, every object clipped to the tile, with a random
    score. With split=True, the disconnected parts of a clipped object are
    returned as separate detections. Returns (instance rows, scores), where
    scores[k] lists the scores given to the views of object k.
    """
    from scipy import ndimage

    scores = [[] for _ in objects]
    rows = []
    for tile_row in grid:
        views = []
        for tile in tile_row:
            masks, classes, confidences, owners = [], [], [], []
            for k, (class_id, mask) in enumerate(objects):
                clipped = mask[tile.row:tile.row_end, tile.col:tile.col_end]
                parts = [clipped]
                if split:
                    labels, count = ndimage.label(clipped)
                    parts = [labels == label for label in range(1, count + 1)]
                for part in parts:
                    if part.any():
                        padded = np.zeros((tile_size, tile_size), bool)
                        padded[:tile.height, :tile.width] = part
                        masks.append(padded)
                        classes.append(class_id)
                        confidences.append(float(rng.uniform(0.5, 1.0)))
                        owners.append(k)
            order = rng.permutation(len(masks))
            stacked = (np.stack([masks[i] for i in order], -1) if masks
                       else np.zeros((tile_size, tile_size, 0), bool))
            found = instances_from_tile(tile, stacked, [classes[i] for i in order],
                                        [confidences[i] for i in order],
                                        core_margin=core_margin, region_shape=shape)
            owner_of = {confidences[i]: owners[i] for i in order}  # scores are distinct
            for view in found:
                scores[owner_of[view.score]].append(view.score)
            views.extend(found)
        rows.append(views)
    return rows, scores


def assert_one_instance_per_object(merged, objects, shape, scores=None):
    assert len(merged) == len(objects)
    unmatched = list(range(len(objects)))
    for instance in merged:
        full = paste(instance, shape)
        matches = [k for k in unmatched if objects[k][0] == instance.class_id
                   and np.array_equal(objects[k][1], full)]
        assert len(matches) == 1, "merged instance at {} matches no object".format(
            instance.box)
        unmatched.remove(matches[0])
        if scores is not None:
            assert instance.score == max(scores[matches[0]])
        assert instance.tile is None
    assert not unmatched


def merge_all(grid, rows, **kwargs):
    """Feed the tile rows to a SeamMerger as detect does, collecting what it finishes."""
    merger, merged = SeamMerger(grid, **kwargs), []
    for views in rows:
        merger.add_row(views)
        merged += merger.pop_finished()
    return merged + list(merger.finish())


# ---------------------------------------------------------------- grid geometry


def test_grid_offsets_are_hand_computed_and_last_tile_ends_at_the_edge():
    grid = tile_grid(200, 150, 64, 16)
    # stride 48; rows: 0, 48, 96, then 136 = 200 - 64; cols: 0, 48, then 86 = 150 - 64
    assert [row[0].row for row in grid] == [0, 48, 96, 136]
    assert [tile.col for tile in grid[0]] == [0, 48, 86]
    assert all(tile.height == 64 and tile.width == 64 for row in grid for tile in row)
    assert grid[-1][-1] == Tile(136, 86, 64, 64)
    assert grid[-1][-1].row_end == 200 and grid[-1][-1].col_end == 150


def test_tile_origins_step_by_the_stride_and_the_last_ends_at_the_edge():
    from maskrcnnlib.tiling import tile_origins

    # stride 64 - 16 = 48; the last origin moves back to length - 64
    assert tile_origins(300, 64, 16) == [0, 48, 96, 144, 192, 236]
    assert tile_origins(112, 64, 16) == [0, 48]
    assert tile_origins(64, 64, 16) == [0]
    assert tile_origins(30, 64, 16) == [0]


def test_grid_fits_exactly_and_covers_every_cell():
    grid = tile_grid(112, 64, 64, 16)
    assert grid == [[Tile(0, 0, 64, 64)], [Tile(48, 0, 64, 64)]]
    covered = np.zeros((77, 301), int)
    for row in tile_grid(77, 301, 64, 20):
        for tile in row:
            covered[tile.row:tile.row_end, tile.col:tile.col_end] += 1
    assert covered.min() >= 1


def test_region_smaller_than_a_tile_gives_one_tile_per_short_axis():
    assert tile_grid(30, 40, 64, 8) == [[Tile(0, 0, 30, 40)]]
    assert tile_grid(30, 100, 64, 8) == [[Tile(0, 0, 30, 64), Tile(0, 36, 30, 64)]]


def test_tiles_meeting_a_block_count_the_tiles_that_share_a_cell_with_it():
    grid = tile_grid(200, 136, 64, 16)  # rows start 0, 48, 96, 136; cols 0, 48, 72
    assert tiles_meeting(grid, (0, 200), (0, 136)) == 12
    assert tiles_meeting(grid, (0, 1), (0, 1)) == 1
    assert tiles_meeting(grid, (60, 100), (70, 71)) == 3  # rows 0, 48, 96; col 48 only
    assert tiles_meeting(grid, (60, 100), (70, 73)) == 3 * 2  # and col 72
    assert tiles_meeting(grid, (64, 64), (0, 136)) == 0  # empty ranges meet nothing
    assert tiles_meeting(grid, (10, 5), (0, 136)) == 0
    rng = np.random.default_rng(7)
    for _ in range(200):  # against a cell-by-cell check
        r0, r1 = sorted(rng.integers(0, 201, 2))
        c0, c1 = sorted(rng.integers(0, 137, 2))
        block = np.zeros((200, 136), bool)
        block[r0:r1, c0:c1] = True
        expected = sum(bool(block[t.row:t.row_end, t.col:t.col_end].any())
                       for row in grid for t in row)
        assert tiles_meeting(grid, (r0, r1), (c0, c1)) == expected


@pytest.mark.parametrize("tile_size, overlap, field", [
    (64, 32, "overlap"), (64, -1, "overlap"), (64, 2.5, "overlap"),
    (32, 4, "tile_size"), (64.0, 4, "tile_size")])
def test_bad_tile_size_or_overlap_raise_a_value_error_naming_it(tile_size, overlap, field):
    with pytest.raises(ValueError, match=field) as error:
        tile_grid(100, 100, tile_size, overlap)
    assert isinstance(error.value, ConfigError) and error.value.field == field


def test_limits_of_overlap_and_min_tile_are_accepted():
    # stride 33: 0, 33, then 36 = 100 - 64 (the last tile overlaps its neighbour by 61)
    assert [row[0].row for row in tile_grid(100, 100, 64, 31)] == [0, 33, 36]
    assert len(tile_grid(100, 100, 16, 0, min_tile=16)) == 7
    with pytest.raises(ValueError):
        tile_grid(0, 100, 64, 8)


# ---------------------------------------------------------------- views of one tile


def test_instances_from_tile_crop_shift_and_drop_empty_and_padding():
    tile = Tile(10, 20, 30, 40)  # padded to 48 x 48 by the caller
    masks = np.zeros((48, 48, 3), bool)
    masks[5:8, 2:6, 0] = True
    masks[29, 39, 0] = True      # last cell of the region inside the tile
    masks[35:40, 0:5, 1] = True  # padding only: dropped
    views = instances_from_tile(tile, masks, [2, 1, 3], [0.9, 0.8, 0.7])
    assert len(views) == 1
    view = views[0]
    assert (view.class_id, view.score, view.tile) == (2, 0.9, tile)
    assert view.box == (15, 22, 40, 60)
    assert view.mask.shape == (25, 38) and view.area == 13
    assert view.mask[0, 0] and view.mask[-1, -1]
    assert not np.shares_memory(view.mask, masks)


def test_core_margin_drops_views_only_along_interior_edges():
    shape = (40, 40)
    grid = tile_grid(*shape, 24, 8, min_tile=8)  # tiles at 0 and 16 on both axes
    top_left = grid[0][0]
    masks = np.zeros((24, 24, 3), bool)
    masks[21:24, 5:9, 0] = True  # bottom margin, shared with the tile below: dropped
    masks[0:3, 5:9, 1] = True    # top margin on the region's edge: kept
    masks[18:24, 5:9, 2] = True  # reaches out of the margin: kept
    views = instances_from_tile(top_left, masks, [1, 1, 1], [0.5, 0.6, 0.7],
                                core_margin=4, region_shape=shape)
    assert sorted(v.score for v in views) == [0.6, 0.7]
    bottom_left = grid[1][0]  # its bottom edge is the region's
    views = instances_from_tile(bottom_left, masks[..., :1], [1], [0.5], core_margin=4,
                                region_shape=shape)
    assert len(views) == 1
    with pytest.raises(ValueError, match="region_shape"):
        instances_from_tile(top_left, masks, [1, 1, 1], [0.5, 0.6, 0.7], core_margin=4)


# ---------------------------------------------------------------- merging a scene

SHAPE = (72, 96)
TILE, OVERLAP = 24, 6  # rows at 0, 18, 36, 48; cols at 0, 18, 36, 54, 72


def scene():
    """Named (class_id, mask, tiles that must see it) of a 72 x 96 region."""
    s = SHAPE
    return {
        "inside one tile": (1, rect(s, (2, 8), (2, 10)), 1),
        "across a column seam": (1, rect(s, (2, 10), (14, 30)), 2),
        "disk across a row seam": (2, disk(s, (21, 48), 5), 2),
        "2 x 2 tiles": (1, rect(s, (14, 30), (12, 30)), 4),
        "3 x 3 tiles": (2, disk(s, (48, 74), 17), 9),
        "touching A": (1, rect(s, (34, 40), (2, 12)), 2),
        "touching B": (1, rect(s, (40, 46), (2, 12)), 2),
        # they touch along the bottom edge of tile row 1 (rows 18..41)
        "touching on an edge C": (1, rect(s, (36, 42), (14, 22)), 4),
        "touching on an edge D": (1, rect(s, (42, 48), (14, 22)), 2),
        "overlapping, class 1": (1, rect(s, (50, 62), (20, 34)), 4),
        "overlapping, class 2": (2, disk(s, (56, 36), 6), 4),
        "duplicate in a corner": (2, rect(s, (19, 23), (37, 41)), 4),
    }


def test_scene_preconditions():
    grid = tile_grid(*SHAPE, TILE, OVERLAP, min_tile=8)
    assert [r[0].row for r in grid] == [0, 18, 36, 48]
    assert [t.col for t in grid[0]] == [0, 18, 36, 54, 72]
    objects = scene()
    for name, (_, mask, tile_count) in objects.items():
        assert len(tiles_seeing(mask, grid)) == tile_count, name
    for a, b in [("touching A", "touching B"), ("touching on an edge C", "touching on an edge D")]:
        grown = np.zeros(SHAPE, bool)
        grown[1:] |= objects[a][1][:-1]
        assert not (objects[a][1] & objects[b][1]).any() and (grown & objects[b][1]).any()
    assert (objects["overlapping, class 1"][1] & objects["overlapping, class 2"][1]).any()


@pytest.mark.parametrize("core_margin", [0, OVERLAP // 2])
def test_each_object_comes_out_once_with_its_full_mask_and_best_score(core_margin):
    grid = tile_grid(*SHAPE, TILE, OVERLAP, min_tile=8)
    objects = [(c, m) for c, m, _ in scene().values()]
    rows, scores = detect(grid, objects, TILE, np.random.default_rng(0), core_margin, SHAPE)
    assert sum(len(r) for r in rows) > len(objects) + 20  # many duplicates and pieces
    if core_margin:  # views wholly in an edge margin were dropped; their neighbours cover them
        all_rows, _ = detect(grid, objects, TILE, np.random.default_rng(0))
        assert sum(len(r) for r in rows) < sum(len(r) for r in all_rows)
    merged = merge_all(grid, rows)
    assert_one_instance_per_object(merged, objects, SHAPE, scores)


def test_instances_are_emitted_as_soon_as_no_later_tile_row_can_reach_them():
    grid = tile_grid(*SHAPE, TILE, OVERLAP, min_tile=8)
    objects = [(c, m) for c, m, _ in scene().values()]
    rows, _ = detect(grid, objects, TILE, np.random.default_rng(1))
    last_rows = [np.flatnonzero(m.any(axis=1))[-1] for _, m in objects]
    merger = SeamMerger(grid)
    emitted = 0
    for index, views in enumerate(rows):
        merger.add_row(views)
        finished = merger.pop_finished()
        reach = grid[index + 1][0].row - 1 if index + 1 < len(grid) else np.inf
        expected = [k for k, last in enumerate(last_rows) if last < reach]
        assert len(finished) == len(expected) - emitted, "tile row {}".format(index)
        emitted += len(finished)
        open_objects = [k for k, last in enumerate(last_rows) if last >= reach]
        views_of_open = sum(1 for r in rows[:index + 1] for v in r if any(
            np.array_equal(paste(v, SHAPE) & objects[k][1], paste(v, SHAPE))
            and v.class_id == objects[k][0] for k in open_objects))
        assert merger.held == views_of_open
    assert 0 < len([k for k in last_rows if k < grid[1][0].row - 1])  # row 0 emits some
    assert merger.first_open_row is None


def test_rows_above_first_open_row_are_final():
    grid = tile_grid(*SHAPE, TILE, OVERLAP, min_tile=8)
    objects = [(c, m) for c, m, _ in scene().values()]
    rows, _ = detect(grid, objects, TILE, np.random.default_rng(5))
    merger = SeamMerger(grid)
    steps = []  # (instances emitted by tile row k, first_open_row after it)
    for views in rows:
        merger.add_row(views)
        steps.append((merger.pop_finished(), merger.first_open_row))
    for k, (_, first_open_row) in enumerate(steps[:-1]):
        later = [i for found, _ in steps[k + 1:] for i in found]
        assert later and min(i.row0 for i in later) >= first_open_row
    # the 3 x 3 disk (rows 31..65) is open after tile row 1, above tile row 2's start
    assert steps[1][1] == 31 < grid[2][0].row


def test_random_scenes_of_disjoint_objects_are_recovered_exactly():
    rng = np.random.default_rng(7)
    for _ in range(6):
        shape = tuple(int(v) for v in rng.integers(30, 70, size=2))
        tile_size = int(rng.integers(12, 24))
        overlap = int(rng.integers(1, (tile_size + 1) // 2))
        grid = tile_grid(*shape, tile_size, overlap, min_tile=8)
        taken = {1: np.zeros(shape, bool), 2: np.zeros(shape, bool)}
        objects = []
        for _ in range(40):  # same-class objects may touch but never overlap
            class_id = int(rng.integers(1, 3))
            center = rng.integers(0, shape)
            size = rng.integers(2, 9)
            mask = (disk(shape, center, size) if rng.random() < 0.5 else
                    rect(shape, (center[0] - size, center[0] + size),
                         (center[1] - size, center[1] + 2 * size)))
            if mask.any() and not (mask & taken[class_id]).any():
                taken[class_id] |= mask
                objects.append((class_id, mask))
        rows, scores = detect(grid, objects, tile_size, rng)
        assert_one_instance_per_object(merge_all(grid, rows), objects, shape, scores)


# ---------------------------------------------------------------- duplicates and partial views


def test_partial_duplicate_keeps_the_union_and_the_higher_score():
    grid = tile_grid(40, 40, 24, 8, min_tile=8)  # tile rows 0..23 and 16..39 share 16..23
    top, bottom = grid[0][0], grid[1][0]
    full = np.ones((4, 8), bool)
    half = full.copy()
    half[:, 4:] = False
    views = [[Instance(1, 0.6, 18, 2, full, top)], [Instance(1, 0.9, 18, 2, half, bottom)]]
    merged = merge_all(grid, views)
    assert len(merged) == 1
    assert merged[0].box == (18, 2, 22, 10) and merged[0].mask.all()
    assert merged[0].score == 0.9


def test_object_seen_in_two_parts_by_one_tile_is_one_instance():
    shape = (48, 40)
    grid = tile_grid(*shape, 24, 8, min_tile=8)  # tile rows 0..23 and 16..39, 24..47
    u_shape = rect(shape, (4, 30), (4, 28)) & ~rect(shape, (4, 26), (10, 22))
    rows, _ = detect(grid, [(1, u_shape)], 24, np.random.default_rng(2), split=True)
    assert max(len(r) for r in rows) >= 2
    assert_one_instance_per_object(merge_all(grid, rows), [(1, u_shape)], shape)


def test_different_classes_on_the_same_cells_are_never_merged():
    grid = tile_grid(40, 40, 24, 8, min_tile=8)
    top, bottom = grid[0][0], grid[1][0]
    mask = np.ones((6, 6), bool)
    views = [[Instance(1, 0.5, 17, 3, mask, top)], [Instance(2, 0.5, 17, 3, mask, bottom)]]
    assert sorted(i.class_id for i in merge_all(grid, views)) == [1, 2]


# ---------------------------------------------------------------- overlap = 0


def test_without_overlap_pieces_meet_across_the_seam_and_edge_touching_objects_merge():
    shape = (40, 40)
    grid = tile_grid(*shape, 20, 0, min_tile=8)  # seams at row 20 and col 20
    crossing = (1, disk(shape, (20, 20), 6))  # cut into four pieces
    apart = [(2, rect(shape, (4, 10), (2, 8))), (2, rect(shape, (10, 16), (2, 8)))]
    other_class = [(1, rect(shape, (30, 38), (2, 20))), (2, rect(shape, (30, 38), (20, 30)))]
    on_seam = [(1, rect(shape, (14, 20), (30, 36))), (1, rect(shape, (20, 26), (30, 36)))]
    rows, _ = detect(grid, [crossing] + apart + other_class + on_seam, 20,
                     np.random.default_rng(3))
    merged = merge_all(grid, rows)
    # Documented limit: same-class objects touching exactly on a seam line become one.
    joined = (1, on_seam[0][1] | on_seam[1][1])
    assert_one_instance_per_object(merged, [crossing] + apart + other_class + [joined], shape)


def test_objects_touching_on_a_tile_edge_that_another_tile_covers_stay_separate():
    shape = (48, 30)
    grid = tile_grid(*shape, 24, 6, min_tile=8)  # rows 0..23, 18..41, 24..47
    assert [r[0].row for r in grid] == [0, 18, 24]  # tile row 2 starts where row 0 ends
    objects = [(1, rect(shape, (16, 24), (2, 10))), (1, rect(shape, (24, 32), (2, 10)))]
    rows, _ = detect(grid, objects, 24, np.random.default_rng(4))
    assert_one_instance_per_object(merge_all(grid, rows), objects, shape)


def test_misuse_raises():
    grid = tile_grid(40, 40, 24, 8, min_tile=8)
    merger = SeamMerger(grid)
    with pytest.raises(ValueError, match="tile row 0"):
        merger.add_row([Instance(1, 0.5, 20, 0, np.ones((2, 2), bool), grid[1][0])])
    merger.add_row([])
    merger.add_row([])
    with pytest.raises(ValueError, match="already"):
        merger.add_row([])
    with pytest.raises(ValueError, match="iou_threshold"):
        SeamMerger(grid, iou_threshold=0)


def test_cross_class_views_of_one_object_merge_to_the_best_class():
    """One square across a seam: the cut view is classed 2 (score 0.6), the whole view 1
    (score 0.9); with cross_class the object comes out once, as class 1."""
    from maskrcnnlib.tiling import Instance, SeamMerger, instances_from_tile, tile_grid

    grid = tile_grid(100, 64, 64, 16)  # tile rows start at 0 and 36
    obj = np.zeros((100, 64), bool)
    obj[56:66, 10:20] = True  # whole in the lower tile, cut at row 64 in the upper one
    upper, lower = grid[0][0], grid[1][0]
    views = []
    for tile, class_id, score in ((upper, 2, 0.6), (lower, 1, 0.9)):
        masks = obj[tile.row:tile.row_end, tile.col:tile.col_end][:, :, None]
        views.append(instances_from_tile(tile, masks, [class_id], [score]))
    for cross_class, expected in ((True, [1]), (False, [1, 2])):
        merger = SeamMerger(grid, cross_class=cross_class)
        out = []
        for row in views:
            merger.add_row(row)
            out += merger.pop_finished()
        out += merger.finish()
        assert sorted(i.class_id for i in out) == expected
        if cross_class:
            assert out[0].area == obj.sum() and isinstance(out[0], Instance)


# ---------------------------------------------------------------- masks="central"


def test_central_rule_takes_the_whole_view_not_the_union_with_a_cut_one():
    """A 10 x 10 square across row 64, the lower edge of the upper tile (tile rows
    0..63 and 36..99). The upper tile cuts it and spills 3 wrong rows at its edge
    (rows 53..55); the lower tile sees it whole, 20 rows from its upper edge.
    "union" keeps the spill, "central" gives the lower tile's view; both keep the
    best score and the best-scoring view's class."""
    grid = tile_grid(100, 64, 64, 16)
    upper, lower = grid[0][0], grid[1][0]
    truth = rect((100, 64), (56, 66), (10, 20))
    spilled = truth | rect((100, 64), (53, 56), (10, 20))
    views = [instances_from_tile(upper, spilled[0:64, :, None], [2], [0.95]),
             instances_from_tile(lower, truth[36:100, :, None], [1], [0.8])]
    union = merge_all(grid, views, cross_class=True)
    central = merge_all(grid, views, cross_class=True, masks="central")
    assert len(union) == len(central) == 1
    assert np.array_equal(paste(union[0], (100, 64)), spilled)
    assert np.array_equal(paste(central[0], (100, 64)), truth)
    assert central[0].score == 0.95 and central[0].class_id == 2


def test_central_rule_takes_each_cell_from_the_tile_it_is_deepest_in():
    """Two whole views of one object in the 8-row band two tiles share (rows 16..23 of
    tile rows 0..23 and 16..39). Rows 17..19 are deeper in the upper tile (6, 5, 4 rows
    from its lower edge against 1, 2, 3 from the lower tile's upper edge), row 20 in
    the lower one (4 against 3). The upper view lacks a cell in row 17, the lower view
    lacks one in row 20: the first stays out, the second too (the lower view
    decides row 20), whichever view scores higher."""
    grid = tile_grid(40, 40, 24, 8, min_tile=8)
    top, bottom = grid[0][0], grid[1][0]
    upper_view = np.ones((4, 6), bool)
    upper_view[0, 0] = False
    lower_view = np.ones((4, 6), bool)
    lower_view[3, 5] = False
    views = [[Instance(1, 0.5, 17, 3, upper_view, top)],
             [Instance(1, 0.9, 17, 3, lower_view, bottom)]]
    merged = merge_all(grid, views, masks="central")
    expected = upper_view & lower_view  # the union would be all 24 cells
    assert len(merged) == 1 and merged[0].score == 0.9
    assert merged[0].box == (17, 3, 21, 9) and np.array_equal(merged[0].mask, expected)


def test_central_rule_recovers_random_scenes_exactly():
    """With views that are exact clips of the objects, the whole view and the union of
    the cut ones both equal the object: "central" gives every object once, exactly."""
    rng = np.random.default_rng(11)
    for _ in range(4):
        shape = tuple(int(v) for v in rng.integers(30, 70, size=2))
        tile_size = int(rng.integers(12, 24))
        overlap = int(rng.integers(1, (tile_size + 1) // 2))
        grid = tile_grid(*shape, tile_size, overlap, min_tile=8)
        taken = np.zeros(shape, bool)
        objects = []
        for _ in range(30):
            center, size = rng.integers(0, shape), int(rng.integers(2, 9))
            mask = disk(shape, center, size)
            if mask.any() and not (mask & taken).any():
                taken |= mask
                objects.append((int(rng.integers(1, 3)), mask))
        rows, scores = detect(grid, objects, tile_size, rng)
        assert_one_instance_per_object(merge_all(grid, rows, masks="central"), objects,
                                       shape, scores)


def test_unknown_mask_rule_is_refused():
    with pytest.raises(ValueError, match="masks"):
        SeamMerger(tile_grid(40, 40, 24, 8, min_tile=8), masks="mean")
