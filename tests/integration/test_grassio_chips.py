"""grassio.chips.read_training_chips on a synthetic scene in the temporary GRASS project.

Scene (region 200 rows x 300 cols, res 1, north=200, west=0; row r has its
cell centres at north = 199.5 - r, column c at east = c + 0.5):

* building 1: square east 40..76, north 150..180  -> rows 20..49, cols 40..75
* building 2: square east 200..220, north 20..40  -> rows 160..179, cols 200..219
* building 3: two squares with category 3 (one multi-part instance)
* tree 4, tree 5: 64-gon disks
Bands: band1 = 101/102/103 inside buildings 1/2/3, 201 inside the disks,
else 0; band2 = row() (1-based); band3 = col() (1-based) with a null block.
With tile 64 and overlap 16 the chip origins are rows 0,48,96,136 and
cols 0,48,96,144,192,236 (24 chips).
"""
import json
import math
import os

import numpy as np
import pytest

from support.grass_helpers import project_state, region_override, unique

pytestmark = pytest.mark.grass

TILE, OVERLAP = 64, 16
ROWS, COLS = 200, 300
SQUARES = [  # (cat, west, east, south, north)
    (1, 40, 76, 150, 180), (2, 200, 220, 20, 40), (3, 120, 130, 100, 110),
    (3, 140, 150, 100, 110)]
DISKS = [(4, 250.0, 150.0, 12.0), (5, 100.0, 40.0, 10.0)]  # (cat, east, north, radius)
CLASS_OF = {1: "building", 2: "building", 3: "building", 4: "tree", 5: "tree"}
MARKER = {1: 101, 2: 102, 3: 103}


SCENE_REGION = dict(n=ROWS, s=0, w=0, e=COLS, res=1)


@pytest.fixture
def scene_region(grass_session):
    with region_override(**SCENE_REGION):
        yield


@pytest.fixture(scope="module")
def positives(scene):
    """(samples, summary) of the chips with objects (negatives_share=0)."""
    with region_override(**SCENE_REGION):
        return chips(scene, negatives_share=0.0)


@pytest.fixture(scope="module")
def every_chip(scene):
    """(samples, summary) with every chip kept (negatives_share=1)."""
    with region_override(**SCENE_REGION):
        return chips(scene, negatives_share=1.0)


def polygon_ascii(cat, points):
    lines = ["B {}".format(len(points) + 1)]
    lines += [" {} {}".format(x, y) for x, y in points + [points[0]]]
    inside_x = sum(x for x, _ in points) / len(points)
    inside_y = sum(y for _, y in points) / len(points)
    lines += ["C 1 1", " {} {}".format(inside_x, inside_y), " 1 {}".format(cat)]
    return "\n".join(lines)


def scene_ascii():
    parts = [polygon_ascii(cat, [(w, s), (e, s), (e, n), (w, n)])
             for cat, w, e, s, n in SQUARES]
    for cat, x, y, radius in DISKS:
        parts.append(polygon_ascii(cat, [
            (x + radius * math.cos(2 * math.pi * k / 64),
             y + radius * math.sin(2 * math.pi * k / 64)) for k in range(64)]))
    return "\n".join(parts) + "\n"


@pytest.fixture(scope="module")
def scene(grass_session):
    """Names of the scene's maps (created once, removed at the end of the module)."""
    import grass.script as gs

    prefix = unique("chips")
    names = {"bands": [prefix + "_b1", prefix + "_b2", prefix + "_b3"],
             "areas": prefix + "_areas", "points": prefix + "_points",
             "notable": prefix + "_notable"}
    env = dict(os.environ, GRASS_REGION=gs.region_env(n=ROWS, s=0, w=0, e=COLS, res=1))
    inside = " || ".join("(x() > {} && x() < {} && y() > {} && y() < {})".format(w, e, s, n)
                         for cat, w, e, s, n in SQUARES if cat == 3)
    marker = "if({}, 103, 0)".format(inside)
    for cat, w, e, s, n in SQUARES[:2]:
        marker = "if(x() > {} && x() < {} && y() > {} && y() < {}, {}, {})".format(
            w, e, s, n, MARKER[cat], marker)
    for cat, x, y, radius in DISKS:
        marker = "if((x() - {})^2 + (y() - {})^2 < {}, 201, {})".format(
            x, y, radius ** 2, marker)
    b1, b2, b3 = names["bands"]
    gs.mapcalc("{} = {}".format(b1, marker), env=env, quiet=True)
    gs.mapcalc("{} = row()".format(b2), env=env, quiet=True)
    gs.mapcalc("{} = if(row() >= 5 && row() <= 6 && col() <= 10, null(), col())".format(b3),
               env=env, quiet=True)
    gs.write_command("v.in.ascii", flags="n", input="-", output=names["areas"],
                     format="standard", stdin=scene_ascii(), quiet=True)
    gs.run_command("v.db.addtable", map=names["areas"], columns="class varchar(20)",
                   quiet=True)
    for name in ("building", "tree"):
        cats = ",".join(str(cat) for cat, value in CLASS_OF.items() if value == name)
        gs.run_command("v.db.update", map=names["areas"], column="class", value=name,
                       where="cat in ({})".format(cats), quiet=True)
    gs.write_command("v.in.ascii", input="-", output=names["points"], format="point",
                     separator="comma", stdin="10,10\n20,20\n", quiet=True)
    gs.write_command("v.in.ascii", flags="n", input="-", output=names["notable"],
                     format="standard", stdin=polygon_ascii(1, [(1, 1), (9, 1), (9, 9),
                                                                (1, 9)]) + "\n",
                     quiet=True)
    yield names
    gs.run_command("g.remove", flags="f", type="raster", name=names["bands"], quiet=True)
    gs.run_command("g.remove", flags="f", type="vector",
                   name=[names["areas"], names["points"], names["notable"]], quiet=True)


def chips(scene, classes=("building", "tree"), **options):
    from maskrcnnlib.grassio.chips import read_training_chips

    arguments = dict(tile_size=TILE, overlap=OVERLAP, negatives_share=0.0, seed=1)
    arguments.update(options)
    return read_training_chips(scene["bands"], scene["areas"], "class",
                               None if classes is None else list(classes), **arguments)


def origin(image):
    """Chip origin (row, col) from band2 = row() and band3 = col() (1-based)."""
    return int(image[-1, -1, 1]) - TILE, int(image[-1, -1, 2]) - TILE


def test_check_rasters_gives_full_names_and_names_the_missing(scene):
    from maskrcnnlib.errors import DatasetError
    from maskrcnnlib.grassio.rasters import check_rasters

    full = check_rasters(scene["bands"])
    assert full == [name + "@PERMANENT" for name in scene["bands"]]
    with pytest.raises(DatasetError, match="nosuchband_x"):
        check_rasters([scene["bands"][0], "nosuchband_x"])


def test_instances_per_class_and_sample_layout(positives):
    samples, summary = positives
    assert summary["instances_per_class"] == {"building": 3, "tree": 2}
    assert summary["classes"] == ["building", "tree"]
    assert summary["chips_total"] == 24 and summary["region_rows"] == ROWS
    assert summary["region_cols"] == COLS and summary["nsres"] == summary["ewres"] == 1.0
    assert summary["negatives_kept"] == 0
    assert json.loads(json.dumps(summary)) == summary  # goes into the model card
    assert summary["chips_kept"] == summary["chips_with_objects"] == len(samples)
    for image, masks, class_ids in samples:
        assert image.shape == (TILE, TILE, 3) and image.dtype == np.float32
        assert masks.shape[:2] == (TILE, TILE) and masks.dtype == bool
        assert class_ids.dtype == np.int32 and masks.shape[2] == len(class_ids) > 0
        assert (masks.sum(axis=(0, 1)) >= 4).all()
        # image[y, x]: y follows GRASS rows (south-going), x follows columns
        row, col = origin(image)
        assert image[0, 0, 1] == row + 1 and image[0, 0, 2] in (col + 1, 0)
        assert (image[:, 1:, 2] - image[:, :-1, 2] == 1).all() or row == 0
    # Each building instance of the map is seen (multi-part 3 as one mask).
    markers = set()
    for image, masks, class_ids in samples:
        for slot in np.flatnonzero(class_ids == 1):
            markers.update(np.unique(image[..., 0][masks[..., slot]]).tolist())
    assert markers == {101.0, 102.0, 103.0}


def test_masks_align_with_the_rasters(positives):
    samples, _ = positives
    disk_ious = []
    for image, masks, class_ids in samples:
        for slot, class_id in enumerate(class_ids):
            mask = masks[..., slot]
            values = np.unique(image[..., 0][mask])
            if class_id == 1:  # squares on cell edges rasterize exactly
                assert len(values) == 1 and values[0] in (101, 102, 103)
                assert (mask == (image[..., 0] == values[0])).all()
            else:  # 64-gons vs. true disks differ only on a few edge cells
                assert class_id == 2
                truth = image[..., 0] == 201
                disk_ious.append((mask & truth).sum() / (mask | truth).sum())
    assert disk_ious and min(disk_ious) > 0.9
    # The multi-part building (rows 90..99, cols 120..129 and 140..149) is one
    # instance: chip (48, 96) holds both parts in a single mask.
    chip = [(image, masks) for image, masks, _ in samples if origin(image) == (48, 96)][0]
    multi = [chip[1][..., slot] for slot in range(chip[1].shape[2])
             if np.all(chip[0][..., 0][chip[1][..., slot]] == 103)]
    assert len(multi) == 1 and multi[0].sum() == 200
    assert multi[0][42:52, 24:34].all() and multi[0][42:52, 44:54].all()


def test_an_object_across_a_chip_edge_is_clipped_in_both_chips(positives):
    samples, _ = positives
    building_1 = {}
    for image, masks, class_ids in samples:
        for slot in range(len(class_ids)):
            if np.all(image[..., 0][masks[..., slot]] == 101):
                building_1[origin(image)] = masks[..., slot]
    # rows 20..49, cols 40..75: chips (0, 0) and (0, 48) hold 24 and 28 of its 36 columns
    left, right = building_1[(0, 0)], building_1[(0, 48)]
    expected_left = np.zeros((TILE, TILE), bool)
    expected_left[20:50, 40:64] = True
    expected_right = np.zeros((TILE, TILE), bool)
    expected_right[20:50, 0:28] = True
    assert (left == expected_left).all() and (right == expected_right).all()
    # and rows 48..49 reach the chips of the second chip row
    assert building_1[(48, 0)].sum() == 2 * 24 and building_1[(48, 48)].sum() == 2 * 28


def test_null_band_cells_are_zero(every_chip):
    samples, _ = every_chip
    first = [image for image, _, _ in samples if origin(image) == (0, 0)][0]
    assert (first[4:6, :10, 2] == 0).all() and (first[3, :10, 2] == np.arange(1, 11)).all()


def test_negatives_share_is_kept_and_seeded(scene, scene_region, positives, every_chip):
    none = positives[1]
    negatives = none["negatives_total"]
    assert negatives > 4 and none["chips_total"] == none["chips_with_objects"] + negatives
    half, half_summary = chips(scene, negatives_share=0.5, seed=3)
    assert half_summary["negatives_kept"] == int(math.floor(negatives * 0.5 + 0.5))
    empty = [origin(image) for image, masks, _ in half if masks.shape[2] == 0]
    assert len(empty) == half_summary["negatives_kept"]
    again, _ = chips(scene, negatives_share=0.5, seed=3)
    assert [origin(image) for image, masks, _ in again if masks.shape[2] == 0] == empty
    every, every_summary = every_chip
    assert len(every) == every_summary["chips_kept"] == 24
    assert every_summary["negatives_kept"] == negatives


def test_region_smaller_than_a_chip_is_padded(scene, grass_session, monkeypatch):
    import grass.script as gs

    monkeypatch.setenv("GRASS_REGION", gs.region_env(n=200, s=150, w=0, e=60, res=1))
    samples, summary = chips(scene, negatives_share=1.0)
    assert summary["chips_total"] == 1 and len(samples) == 1
    image, masks, class_ids = samples[0]
    assert image.shape == (TILE, TILE, 3)
    assert (image[50:] == 0).all() and (image[:, 60:] == 0).all()
    assert image[49, 59, 1] == 50 and image[49, 59, 2] == 60
    assert list(class_ids) == [1] and masks[20:50, 40:60, 0].all()
    assert masks[..., 0].sum() == 30 * 20


def test_region_mask_and_maps_unchanged(scene, grass_session):
    """Under a temporary region (WIND_OVERRIDE) and a MASK, as the train module runs it."""
    import grass.script as gs

    gs.use_temp_region()
    mask_made = False
    try:
        gs.run_command("g.region", n=ROWS, s=0, w=0, e=COLS, res=1)
        assert not gs.find_file("MASK", element="cell", mapset=".")["fullname"]
        gs.mapcalc("MASK = if(x() > 60, 1, null())", quiet=True)
        mask_made = True
        before = project_state(gs)
        mask_cells = gs.parse_command("r.univar", map="MASK", flags="g")["n"]
        samples, summary = chips(scene)
        assert project_state(gs) == before
        assert gs.parse_command("r.univar", map="MASK", flags="g")["n"] == mask_cells
        assert summary["region_rows"] == ROWS and summary["region_cols"] == COLS
        for image, masks, _ in samples:  # masked cells read as 0 and hold no instance
            assert not masks[image[..., 2] <= 60].any()
        clipped = [masks[..., slot].sum() for image, masks, class_ids in samples
                   for slot in range(len(class_ids))
                   if np.all(image[..., 0][masks[..., slot]] == 101)]
        # building 1 keeps its columns 60..75: 4 in chips at col 0, 16 in chips at col 48
        assert sorted(clipped) == sorted([30 * 4, 30 * 16, 2 * 4, 2 * 16])
    finally:
        if mask_made:
            gs.run_command("g.remove", flags="f", type="raster", name="MASK", quiet=True)
        gs.del_temp_region()


def test_unknown_classes_are_named_and_counted(scene, scene_region):
    from maskrcnnlib.errors import DatasetError

    with pytest.raises(DatasetError, match=r"'tree' \(2 features\)"):
        chips(scene, classes=["building"])
    samples, summary = chips(scene, classes=None)
    assert summary["classes"] == ["building", "tree"]
    samples, summary = chips(scene, classes=["tree", "building"])
    assert summary["instances_per_class"] == {"tree": 2, "building": 3}
    ids = {int(i) for _, _, class_ids in samples for i in class_ids}
    assert ids == {1, 2}


@pytest.mark.parametrize("case, error, match", [
    ("missing_map", "DatasetError", "Vector map <nosuchmap_q> not found"),
    ("points", "DatasetError", "has no areas"),
    ("no_table", "DatasetError", "no attribute table"),
    ("missing_column", "DatasetError", r"no column <kind>.*columns are: cat, class"),
    ("missing_band", "DatasetError", "nosuchband_q"),
    ("small_tile", "ConfigError", "tile_size"),
    ("big_overlap", "ConfigError", "overlap"),
    ("empty_region", "DatasetError", "No areas of vector map"),
])
def test_errors(scene, scene_region, monkeypatch, case, error, match):
    import grass.script as gs
    from maskrcnnlib import errors
    from maskrcnnlib.grassio.chips import read_training_chips

    arguments = dict(bands=scene["bands"], training_map=scene["areas"],
                     class_column="class", classes=["building", "tree"], tile_size=TILE,
                     overlap=OVERLAP)
    changes = {"missing_map": {"training_map": "nosuchmap_q"},
               "points": {"training_map": scene["points"]},
               "no_table": {"training_map": scene["notable"]},
               "missing_column": {"class_column": "kind"},
               "missing_band": {"bands": scene["bands"][:2] + ["nosuchband_q"]},
               "small_tile": {"tile_size": 32, "overlap": 0},
               "big_overlap": {"overlap": 32}}
    arguments.update(changes.get(case, {}))
    if case == "empty_region":
        monkeypatch.setenv("GRASS_REGION", gs.region_env(n=20, s=0, w=280, e=300, res=1))
    before = project_state(gs)
    with pytest.raises(getattr(errors, error), match=match):
        read_training_chips(**arguments)
    assert project_state(gs) == before


def test_overlapping_polygons_share_no_cell(scene, grass_session, tmp_path, monkeypatch):
    """v.in.ogr makes the overlap an area with both categories: it goes to the first."""
    import grass.script as gs

    def square(fid, name, west, south, side):
        ring = [[west, south], [west + side, south], [west + side, south + side],
                [west, south + side], [west, south]]
        return {"type": "Feature", "properties": {"id": fid, "class": name},
                "geometry": {"type": "Polygon", "coordinates": [ring]}}

    path = tmp_path / "overlap.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        square(1, "building", 10, 10, 20), square(2, "tree", 25, 25, 10)]}))
    name = unique("chips_overlap")
    gs.run_command("v.in.ogr", flags="o", input=str(path), output=name, quiet=True)
    try:
        monkeypatch.setenv("GRASS_REGION", gs.region_env(n=64, s=0, w=0, e=64, res=1))
        from maskrcnnlib.grassio.chips import read_training_chips

        samples, summary = read_training_chips(
            scene["bands"], name, "class", ["building", "tree"], TILE, OVERLAP)
        (image, masks, class_ids), = samples
        assert list(class_ids) == [1, 2]
        assert masks.sum(axis=2).max() == 1  # no cell in two masks
        assert masks[..., 0].sum() == 400 and masks[..., 1].sum() == 100 - 25
    finally:
        gs.run_command("g.remove", flags="f", type="vector", name=name, quiet=True)


def test_area_on_disk_gives_the_chips_and_windows_in_memory(scene, scene_region):
    """memory=0 leaves the area's rasters on disk (read a window at a time): the same
    chips, bit for bit, as the area read into memory; close() removes the files."""
    from maskrcnnlib.dataset.windows import RandomWindows, allowed_origins
    from maskrcnnlib.grassio.chips import read_training_area, read_validation_areas

    areas = {}
    for memory in (None, 0):
        areas[memory] = read_training_area(scene["bands"], scene["areas"], "class",
                                           ["building", "tree"], TILE, OVERLAP,
                                           negatives_share=0.5, seed=2, memory=memory)
    (memory, summary), (disk, disk_summary) = areas[None], areas[0]
    try:
        assert summary["area_in_memory"] and not disk_summary["area_in_memory"]
        assert not memory.streamed and disk.streamed
        files = disk.id_cells.paths + disk.image_cells.paths
        assert len(files) == 4 and all(os.path.isfile(path) for path in files)
        assert {k: v for k, v in summary.items() if k != "area_in_memory"} == \
            {k: v for k, v in disk_summary.items() if k != "area_in_memory"}
        assert disk.chosen == memory.chosen and disk.chip_ids == memory.chip_ids
        for index in range(len(memory.origins)):
            for ours, theirs in zip(memory.chip(index), disk.chip(index)):
                assert ours.dtype == theirs.dtype
                np.testing.assert_array_equal(ours, theirs)
        draws = []
        for area in (memory, disk):
            windows = RandomWindows(area, allowed_origins(None, ROWS, COLS, TILE), 10)
            rng = np.random.default_rng(5)
            draws.append([windows.load_random(i, rng) for i in range(12)])
        for ours, theirs in zip(*draws):
            for first, second in zip(ours, theirs):
                np.testing.assert_array_equal(first, second)
        held = read_validation_areas(scene["notable"])
        held_on_disk = read_validation_areas(scene["notable"], streamed=True)
        np.testing.assert_array_equal(held.read(0, 0, ROWS, COLS) != 0,
                                      held_on_disk.read(0, 0, ROWS, COLS) != 0)
        assert (held.read(0, 0, ROWS, COLS) != 0).sum() == 64  # 8 x 8 cells
        held_file = held_on_disk.cells.paths[0]
        held_on_disk.close()
        assert not os.path.exists(held_file)
    finally:
        memory.close()
        disk.close()
    assert not any(os.path.exists(path) for path in files)
    assert not os.path.exists(os.path.dirname(files[0]))
