"""Detection I/O of maskrcnnlib.grassio (region_info, read_tile_rows, InstanceWriter).

Regions: BASE is 120 rows x 150 cols at res 1 with north=120, west=0; SHIFTED
has the same cells at res 2 with north=1240, west=3000 (to catch row/col vs
north/east mistakes). A region cell (row, col) has its centre at
east = west + (col + 0.5) * res, north = north - (row + 0.5) * res.

Expected values come from the numpy masks given to the writer (cell counts,
mean cell positions), not from the code under test.
"""
import os
from collections import namedtuple

import numpy as np
import pytest

from support.grass_helpers import project_state, region_override, unique

pytestmark = pytest.mark.grass

Inst = namedtuple("Inst", "class_id score row0 col0 mask")  # duck type of tiling.Instance
Tile = namedtuple("Tile", "row col height width")

BASE = dict(n=120, s=0, w=0, e=150, res=1)
SHIFTED = dict(n=1240, s=1000, w=3000, e=3300, res=2)
CLASSES = ["building", "tree", "car"]


def square(class_id, score, row0, col0, height, width):
    return Inst(class_id, score, row0, col0, np.ones((height, width), bool))


def disk(class_id, score, row, col, radius):
    """Cells whose centre lies within radius of cell (row, col)'s centre; compact box."""
    y, x = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return Inst(class_id, score, row - radius, col - radius, x ** 2 + y ** 2 <= radius ** 2)


def scene():
    """Instances in the order the writer gets them, and their expected claimed cells."""
    first = [square(1, 0.9, 10, 20, 10, 10),            # cat 1: 100 cells
             square(1, 0.8, 30, 100, 10, 10),           # cat 2 and 3 touch along
             square(1, 0.7, 30, 110, 10, 10)]           # col 109 | 110
    second = [disk(2, 0.85, 60, 40, 8)]                 # cat 4
    tall = [Inst(2, 0.6, 45, 130, np.ones((70, 10), bool))]  # cat 5: rows 45..114
    late = [square(2, 0.5, 15, 25, 10, 10),             # cat 6: loses 25 cells to cat 1
            square(1, 0.4, 12, 22, 4, 4),               # wholly inside cat 1: dropped
            square(1, 0.3, 22, 30, 4, 6)]               # 15 of 24 cells taken: dropped
    return first, second, tall, late


def largest_part(cells):
    """The largest 4-connected part, by a flood fill written here (not scipy's)."""
    best, seen = np.zeros_like(cells), np.zeros_like(cells)
    for start in zip(*np.nonzero(cells)):
        if seen[start]:
            continue
        part, todo = np.zeros_like(cells), [start]
        seen[start] = True
        while todo:
            y, x = todo.pop()
            part[y, x] = True
            for ny, nx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                if 0 <= ny < cells.shape[0] and 0 <= nx < cells.shape[1] \
                        and cells[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    todo.append((ny, nx))
        if part.sum() > best.sum():
            best = part
    return best


def expected_cells(rows=120, cols=150):
    """Region grid of expected categories (0: none), earlier instances keeping cells."""
    grid = np.zeros((rows, cols), np.int32)
    cat = 0
    for instance in [i for group in scene() for i in group]:
        h, w = instance.mask.shape
        window = grid[instance.row0:instance.row0 + h, instance.col0:instance.col0 + w]
        free = largest_part(instance.mask & (window == 0))
        if free.sum() >= instance.mask.sum() / 2:  # more than half taken: a duplicate
            cat += 1
            window[free] = cat
    return grid


def write_scene(output, **options):
    from maskrcnnlib.grassio.writer import InstanceWriter

    first, second, tall, late = scene()
    writer = InstanceWriter(output, CLASSES, **options)
    writer.add(first)
    writer.flush_until(30)
    writer.add(second)
    writer.flush_until(45)
    writer.add(tall)
    writer.flush_until(80)
    writer.flush_until(115)
    writer.add(late)  # above flushed rows: allowed, e.g. a second image
    return writer, writer.close()


def centre(cell, region):
    row, col = cell
    return (region["w"] + (col + 0.5) * region["res"], region["n"] - (row + 0.5) * region["res"])


def cats_at(gs, name, cell, region, kind="Area"):
    hits = gs.vector_what(map=name, coord=centre(cell, region))
    return [(int(hit["Category"]), hit["Attributes"]["class"]) for hit in hits
            if hit.get("Type") == kind]


def records(gs, name):
    import json

    text = gs.read_command("v.db.select", map=name, format="json")
    return {int(r["cat"]): r for r in json.loads(text)["records"]}


def geometry_areas(gs, name):
    """{cat: summed area of its areas} measured on the geometry by v.to.db."""
    areas = {}
    for line in gs.read_command("v.to.db", flags="p", map=name, option="area",
                                columns="x", type="centroid", quiet=True).splitlines():
        cat, value = line.split("|")
        areas[int(cat)] = areas.get(int(cat), 0.0) + float(value)
    return areas


def assert_clean_topology(gs, name, areas):
    topology = gs.vector_info_topo(name)
    assert topology["areas"] == topology["centroids"] == areas
    errors = unique("errors")
    gs.run_command("v.build", flags="e", map=name, error=errors, quiet=True)
    try:
        assert gs.vector_info_topo(errors)["primitives"] == 0
    finally:
        gs.run_command("g.remove", flags="f", type="vector", name=errors, quiet=True)


@pytest.mark.parametrize("region", [BASE, SHIFTED], ids=["res1", "res2_shifted"])
def test_areas_attributes_and_positions(grass_session, region):
    import grass.script as gs

    output = unique("objects")
    with region_override(**region):
        before = project_state(gs)
        writer, count = write_scene(output, history="i.ann.maskrcnn.detect output=x")
        after = project_state(gs)
    try:
        grid = expected_cells()
        cells = {cat: int((grid == cat).sum()) for cat in range(1, grid.max() + 1)}
        assert count == writer.count == 6 and writer.dropped == writer.duplicates == 2
        assert cells[1] == 100 and cells[6] == 75 and cells[5] == 700
        cell_area = region["res"] ** 2
        table = records(gs, output)
        assert sorted(table) == [1, 2, 3, 4, 5, 6]
        expected = {1: ("building", 1, 0.9), 2: ("building", 1, 0.8), 3: ("building", 1, 0.7),
                    4: ("tree", 2, 0.85), 5: ("tree", 2, 0.6), 6: ("tree", 2, 0.5)}
        for cat, (name, class_id, score) in expected.items():
            record = table[cat]
            assert (record["class"], int(record["class_id"])) == (name, class_id)
            assert float(record["score"]) == pytest.approx(score)
            assert float(record["area"]) == pytest.approx(cells[cat] * cell_area)
        measured = geometry_areas(gs, output)
        assert measured == pytest.approx({cat: n * cell_area for cat, n in cells.items()})
        assert_clean_topology(gs, output, areas=6)
        # positions: the touching pair are two areas, the overlap stays with cat 1
        assert cats_at(gs, output, (35, 109), region) == [(2, "building")]
        assert cats_at(gs, output, (35, 110), region) == [(3, "building")]
        assert cats_at(gs, output, (17, 27), region) == [(1, "building")]
        assert cats_at(gs, output, (22, 32), region) == [(6, "tree")]
        assert cats_at(gs, output, (60, 40), region) == [(4, "tree")]
        assert cats_at(gs, output, (114, 139), region) == [(5, "tree")]
        assert cats_at(gs, output, (115, 139), region) == []
        assert cats_at(gs, output, (5, 5), region) == []
        history = gs.read_command("v.info", flags="h", map=output)
        assert "i.ann.maskrcnn.detect output=x" in history and "tmp_maskrcnn" not in history
        link = gs.vector_db(output)[1]
        assert link["table"] == output and link["name"] == output
        # nothing else changed: region, MASK, maps (but the output), tables
        assert after["wind"] == before["wind"] and after["region"] == before["region"]
        assert after["mask"] == before["mask"]
        assert set(after["maps"].split()) - set(before["maps"].split()) == {output}
        assert set(after["tables"].split()) - set(before["tables"].split()) == {output}
        assert not os.path.exists(writer._grid_path)
    finally:
        gs.run_command("g.remove", flags="f", type="vector", name=output, quiet=True)


def test_areas_and_points_in_one_map(grass_session):
    import grass.script as gs

    output = unique("both")
    with region_override(**BASE):
        _, count = write_scene(output, output_type=("area", "point"))
    try:
        assert count == 6
        topology = gs.vector_info_topo(output)
        assert topology["points"] == 6 and topology["areas"] == topology["centroids"] == 6
        grid = expected_cells()
        text = gs.read_command("v.out.ascii", input=output, type="point", format="point",
                               separator="pipe")
        points = {int(cat): (float(x), float(y)) for x, y, cat in
                  (line.split("|")[:3] for line in text.splitlines())}
        assert sorted(points) == [1, 2, 3, 4, 5, 6]
        for cat, (east, north) in points.items():
            rows, cols = np.nonzero(grid == cat)
            assert east == pytest.approx(cols.mean() + 0.5)
            assert north == pytest.approx(120 - rows.mean() - 0.5)
        assert len(records(gs, output)) == 6  # one row per instance, shared by both
    finally:
        gs.run_command("g.remove", flags="f", type="vector", name=output, quiet=True)


def test_points_only(grass_session):
    import grass.script as gs

    output = unique("points")
    with region_override(**SHIFTED):
        _, count = write_scene(output, output_type=("point",))
    try:
        topology = gs.vector_info_topo(output)
        assert count == 6 and topology["points"] == 6 and topology["areas"] == 0
        text = gs.read_command("v.out.ascii", input=output, type="point", format="point",
                               separator="pipe")
        first = {int(c): (float(x), float(y)) for x, y, c in
                 (line.split("|")[:3] for line in text.splitlines())}[1]
        assert first == pytest.approx(centre((14.5, 24.5), SHIFTED))  # mean of rows 10..19
        assert float(records(gs, output)[6]["area"]) == pytest.approx(75 * 4)
    finally:
        gs.run_command("g.remove", flags="f", type="vector", name=output, quiet=True)


def test_one_map_per_class(grass_session):
    import grass.script as gs

    from maskrcnnlib.grassio.writer import InstanceWriter

    classes = [unique("bldg"), unique("tree"), unique("car")]
    with region_override(**BASE):
        before = project_state(gs)
        writer = InstanceWriter(None, classes, per_class=True)
        first, second, tall, late = scene()
        writer.add(first + second + tall + late)
        count = writer.close()
        after = project_state(gs)
    try:
        assert count == 6 and writer.counts() == {classes[0]: 3, classes[1]: 3,
                                                 classes[2]: 0}
        buildings, trees = records(gs, classes[0]), records(gs, classes[1])
        assert sorted(buildings) == [1, 2, 3] and sorted(trees) == [4, 5, 6]
        assert {r["class"] for r in buildings.values()} == {classes[0]}
        assert float(trees[6]["area"]) == pytest.approx(75)
        assert_clean_topology(gs, classes[0], areas=3)
        assert_clean_topology(gs, classes[1], areas=3)
        assert not gs.find_file(classes[2], element="vector")["fullname"]  # no detections
        assert cats_at(gs, classes[0], (35, 110), BASE) == [(3, classes[0])]
        new = set(after["maps"].split()) - set(before["maps"].split())
        assert new == set(classes[:2])
    finally:
        gs.run_command("g.remove", flags="f", type="vector", name=classes[:2], quiet=True)


def test_per_class_needs_valid_map_names(grass_session):
    from maskrcnnlib.errors import DetectionError
    from maskrcnnlib.grassio.writer import InstanceWriter

    with region_override(**BASE), pytest.raises(DetectionError, match="small tree"):
        InstanceWriter(None, ["building", "small tree"], per_class=True)


def test_no_detections_give_an_empty_map_with_its_table(grass_session):
    import grass.script as gs

    from maskrcnnlib.grassio.writer import InstanceWriter

    output = unique("empty")
    with region_override(**BASE):
        before = project_state(gs)
        writer = InstanceWriter(output, CLASSES, output_type=("area", "point"))
        writer.flush_until(120)
        assert writer.close() == 0
        after = project_state(gs)
    try:
        topology = gs.vector_info_topo(output)
        assert topology["primitives"] == 0 and topology["areas"] == 0
        columns = gs.vector_columns(output)
        assert [columns[name]["type"].lower() for name in
                ("cat", "class", "class_id", "score", "area")] == [
                    "integer", "text", "integer", "double precision", "double precision"]
        assert records(gs, output) == {}
        new = set(after["maps"].split()) - set(before["maps"].split())
        assert new == {output}
    finally:
        gs.run_command("g.remove", flags="f", type="vector", name=output, quiet=True)


def test_existing_output_is_kept_without_overwrite_and_replaced_with_it(grass_session):
    import grass.script as gs

    from maskrcnnlib.errors import DetectionError
    from maskrcnnlib.grassio.writer import InstanceWriter

    output = unique("exists")
    gs.write_command("v.in.ascii", input="-", output=output, format="point",
                     separator="comma", stdin="1,1\n2,2\n3,3\n", quiet=True)
    try:
        with region_override(**BASE):
            before = project_state(gs)
            with pytest.raises(DetectionError, match=output):
                InstanceWriter(output, CLASSES)
            assert project_state(gs) == before
            assert gs.vector_info_topo(output)["points"] == 3
            writer = InstanceWriter(output, CLASSES, overwrite=True)
            writer.add([square(3, 0.5, 1, 1, 3, 3)])
            assert writer.close() == 1
        assert gs.vector_info_topo(output)["points"] == 0
        assert records(gs, output)[1]["class"] == "car"
        assert set(project_state(gs)["maps"].split()) == set(before["maps"].split())
    finally:
        gs.run_command("g.remove", flags="f", type="vector", name=output, quiet=True)


def test_failure_and_abort_leave_nothing_behind(grass_session, monkeypatch):
    import grass.script as gs

    from maskrcnnlib.errors import DetectionError
    from maskrcnnlib.grassio.writer import InstanceWriter

    output = unique("failed")
    with region_override(**BASE):
        before = project_state(gs)
        writer = InstanceWriter(output, CLASSES, output_type=("area", "point"))
        writer.add(scene()[0])

        def broken(self, vector):
            raise DetectionError("table broke")

        monkeypatch.setattr(InstanceWriter, "_fill_table", broken)
        with pytest.raises(DetectionError, match="table broke"):
            writer.close()
        assert project_state(gs) == before
        assert not os.path.exists(writer._grid_path)
        aborted = InstanceWriter(output, CLASSES)
        aborted.add(scene()[1])
        aborted.abort()
        aborted.abort()
        assert project_state(gs) == before and not os.path.exists(aborted._grid_path)
        with pytest.raises(DetectionError, match="closed"):
            aborted.add(scene()[1])


def test_region_info(grass_session):
    from maskrcnnlib.grassio.region import region_info

    with region_override(**SHIFTED):
        assert region_info() == {
            "rows": 120, "cols": 150, "north": 1240.0, "south": 1000.0, "east": 3300.0,
            "west": 3000.0, "nsres": 2.0, "ewres": 2.0}


def test_cells_within_gives_the_region_cells_a_rectangle_meets():
    from maskrcnnlib.grassio.region import cells_within

    # SHIFTED: 120 rows from north 1240, 150 cols from west 3000, res 2 (hand values)
    region = {"rows": 120, "cols": 150, "north": 1240.0, "south": 1000.0, "east": 3300.0,
              "west": 3000.0, "nsres": 2.0, "ewres": 2.0}
    assert cells_within((1240, 1000, 3300, 3000), region) == ((0, 120), (0, 150))
    # edges on cell boundaries: rows 10..19, cols 5..14
    assert cells_within((1220, 1200, 3030, 3010), region) == ((10, 20), (5, 15))
    # edges inside cells: a cell covered in part counts
    assert cells_within((1219, 1201, 3029.5, 3011), region) == ((10, 20), (5, 15))
    # beyond the region: clipped
    assert cells_within((1300, 1100, 3500, 2900), region) == ((0, 70), (0, 150))
    # outside: empty ranges
    first, end = cells_within((900, 800, 3300, 3000), region)[0]
    assert first >= end


@pytest.fixture(scope="module")
def markers(grass_session):
    """Bands in SHIFTED: row() and col() (1-based), x() with a null block, y()."""
    import grass.script as gs

    prefix = unique("marks")
    names = [prefix + suffix for suffix in ("_row", "_col", "_x", "_y")]
    env = dict(os.environ, GRASS_REGION=gs.region_env(**SHIFTED))
    gs.mapcalc("{} = row()".format(names[0]), env=env, quiet=True)
    gs.mapcalc("{} = col()".format(names[1]), env=env, quiet=True)
    gs.mapcalc("{} = if(row() >= 71 && row() <= 72 && col() >= 5 && col() <= 7, null(), x())"
               .format(names[2]), env=env, quiet=True)
    gs.mapcalc("{} = y()".format(names[3]), env=env, quiet=True)
    yield names
    gs.run_command("g.remove", flags="f", type="raster", name=names, quiet=True)


def test_read_tile_rows_gives_the_cells_of_each_tile(markers):
    import grass.script as gs

    from maskrcnnlib.grassio.rasters import read_tile_rows

    grid = [[Tile(row, col, 64, 64) for col in (0, 48, 86)] for row in (0, 56)]
    with region_override(**SHIFTED):
        before = project_state(gs)
        strips = list(read_tile_rows(markers, grid))
        assert project_state(gs) == before
    assert [[tile for tile, _, _ in strip] for strip in strips] == grid
    for strip in strips:
        for tile, image, valid in strip:
            assert image.shape == (64, 64, 4) and image.dtype == np.float32
            assert valid.shape == (64, 64) and valid.dtype == bool
            rows = tile.row + np.arange(64)[:, None]  # y = rows down (south)
            cols = tile.col + np.arange(64)[None, :]  # x = cols east
            np.testing.assert_array_equal(image[:, :, 0], np.broadcast_to(rows + 1, (64, 64)))
            np.testing.assert_array_equal(image[:, :, 1], np.broadcast_to(cols + 1, (64, 64)))
            null = (rows >= 70) & (rows <= 71) & (cols >= 4) & (cols <= 6)
            np.testing.assert_array_equal(valid, ~null)
            east = np.broadcast_to(3000 + (cols + 0.5) * 2, (64, 64))
            np.testing.assert_array_equal(image[:, :, 2], np.where(null, 0, east))
            north = np.broadcast_to(1240 - (rows + 0.5) * 2, (64, 64))
            np.testing.assert_array_equal(image[:, :, 3], north)
    assert (~strips[1][0][2]).sum() == 6 and strips[0][0][2].all()


def test_read_tile_rows_honours_the_mask_and_leaves_it(markers):
    import grass.script as gs

    from maskrcnnlib.grassio.rasters import read_tile_rows

    with region_override(**SHIFTED):
        gs.run_command("r.mask", raster=markers[0], maskcats="1 thru 10", quiet=True)
        try:
            before = project_state(gs)
            (strip,) = list(read_tile_rows(markers[:2], [[Tile(0, 0, 20, 30)]]))
            assert project_state(gs) == before
        finally:
            gs.run_command("r.mask", flags="r", quiet=True)
    tile, image, valid = strip[0]
    assert valid[:10].all() and not valid[10:].any()
    assert (image[10:] == 0).all() and image[9, 29, 1] == 30


def test_read_tile_rows_names_a_missing_raster(markers):
    from maskrcnnlib.errors import DetectionError
    from maskrcnnlib.grassio.rasters import read_tile_rows

    with region_override(**SHIFTED), pytest.raises(DetectionError, match="nosuchband_y"):
        next(read_tile_rows([markers[0], "nosuchband_y"], [[Tile(0, 0, 8, 8)]]))


def test_a_failing_step_is_reported_with_its_message(grass_session, monkeypatch):
    import grass.script as gs

    from maskrcnnlib.errors import DetectionError
    from maskrcnnlib.grassio import writer as writer_module
    from maskrcnnlib.grassio.writer import InstanceWriter

    monkeypatch.setattr(writer_module, "COLUMNS", "class nosuchtype")
    output = unique("badtable")
    with region_override(**BASE):
        before = project_state(gs)
        writer = InstanceWriter(output, CLASSES)
        writer.add(scene()[0])
        with pytest.raises(DetectionError, match="(?s)db.execute.*no such column: class_id"):
            writer.close()
        assert project_state(gs) == before


def test_an_object_cut_in_two_keeps_its_larger_part(grass_session):
    """A better object cuts a bar in two (and a cell touches it by a corner only): the
    bar keeps its larger 4-connected part, so it becomes one area."""
    from maskrcnnlib.grassio.writer import InstanceWriter

    with region_override(**BASE):
        writer = InstanceWriter(unique("cut"), CLASSES)
        try:
            bar = np.ones((2, 31), bool)
            corner = np.zeros((4, 4), bool)
            corner[0, 0] = corner[1, 1] = corner[2, 1] = corner[2, 2] = True
            writer.add([Inst(1, 0.9, 0, 50, np.ones((20, 2), bool)),  # cols 50..51
                        Inst(2, 0.8, 10, 40, bar),                    # cols 40..70
                        Inst(2, 0.7, 30, 30, corner)])                # (30, 30) by a corner
            ids = writer.id_rows(0, 40)
            assert (ids[10:12, 40:50] == 0).all()  # the smaller side: unclaimed
            assert (ids[10:12, 52:71] == 2).all() and (ids[10:12, 50:52] == 1).all()
            assert ids[30, 30] == 0 and (ids[31:33, 31] == 3).all() and ids[32, 32] == 3
            assert [cells for _, _, cells in writer.objects()] == [40, 38, 3]
        finally:
            writer.abort()


def test_small_holes_are_filled_courtyards_and_other_objects_stay(grass_session):
    """Mask noise leaves holes: a missing cell inside an object, or a notch that meets
    the outside only at a corner. r.to.vect would make each an area without centroid
    (the object's outline split in two). Holes up to 1 % of the object (or one cell)
    are filled; a courtyard, or a hole holding an earlier object, stays."""
    import grass.script as gs

    name = unique("holes")
    with region_override(**BASE):
        writer = grassio_writer(name)
        try:
            pin = np.ones((20, 20), bool)          # 394 cells: holes up to 3.94 cells filled
            pin[5, 5] = False                      # a pinhole
            pin[10, 14:17] = False                 # a 3-cell hole
            pin[0, 7] = pin[1, 8] = False          # a notch on the edge, and a hole meeting it by a corner
            yard = np.ones((20, 20), bool)         # 400 cells, a 5-cell hole: a courtyard
            yard[8, 8:13] = False
            ring = np.ones((9, 9), bool)           # 81 cells around an earlier object
            ring[4, 4] = False
            writer.add([Inst(1, 0.9, 60, 64, np.ones((1, 1), bool)),  # the earlier object
                        Inst(1, 0.8, 10, 10, pin),
                        Inst(1, 0.7, 10, 40, yard),
                        Inst(2, 0.6, 56, 60, ring)])
            ids = writer.id_rows(0, 70)
            # every hole of the pin object filled; the notch on its edge stays
            assert ids[10, 17] == 0 and (ids[10:30, 10:30] == 2).sum() == 399
            assert ids[18, 48:53].tolist() == [0] * 5 and (ids[10:30, 40:60] == 3).sum() == 395
            assert ids[60, 64] == 1 and (ids[56:65, 60:69] == 4).sum() == 80
            assert [cells for _, _, cells in writer.objects()] == [1, 399, 395, 80]
            writer.close()
        except BaseException:
            writer.abort()
            raise
        # each object is one area with its centroid (object 1 fills the ring's hole);
        # the courtyard is the one area without a centroid
        topology = gs.vector_info_topo(name)
        assert topology["centroids"] == 4 and topology["areas"] == 5, topology


def grassio_writer(name):
    from maskrcnnlib.grassio.writer import InstanceWriter

    return InstanceWriter(name, CLASSES)
