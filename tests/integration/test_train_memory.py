"""i.ann.maskrcnn.train with a training area larger than memory=: read from disk a window
at a time, it trains as the area held in memory does (same held-out blocks, same random
windows, same losses), and leaves no file behind."""
import csv
import os

import pytest

from test_train_module import FAST, TRAIN

pytestmark = pytest.mark.grass
SIZE = 320  # 320 x 320 cells, 3 bands: 1.6 MB of rasters, more than memory=1


@pytest.fixture
def big_scene(grass_session):
    """Bands mem_b0..2 and areas mem_areas (column value: 1 squares, 2 disks) on a
    40-cell grid over a SIZE x SIZE region."""
    import grass.script as gs

    gs.run_command("g.region", n=SIZE, s=0, w=0, e=SIZE, res=1)
    r, c = "((row() - 1) % 40 - 20)", "((col() - 1) % 40 - 20)"
    kind = "((int((row() - 1) / 40) + int((col() - 1) / 40)) % 2)"
    shape = ("if({k} == 0 && abs({r}) <= 7 && abs({c}) <= 7, 1, "
             "if({k} == 1 && {r} * {r} + {c} * {c} <= 64, 2, null()))").format(k=kind, r=r,
                                                                                 c=c)
    gs.mapcalc("mem_objects = " + shape, overwrite=True, quiet=True)
    bands = []
    for band, colour in enumerate(((200, 60), (60, 60), (60, 200))):
        gs.mapcalc("mem_b{b} = if(isnull(mem_objects), 90 + rand(-20, 20), "
                   "if(mem_objects == 1, {0}, {1}))".format(*colour, b=band), seed=band + 1,
                   overwrite=True, quiet=True)
        bands.append("mem_b{}".format(band))
    gs.run_command("r.to.vect", input="mem_objects", output="mem_areas", type="area",
                   overwrite=True, quiet=True)
    return bands, "mem_areas"


def temporary_entries():
    """What the mapset's temporary folder (for this host) holds."""
    import grass.script as gs

    env = gs.gisenv()
    folder = os.path.join(env["GISDBASE"], env["LOCATION_NAME"], env["MAPSET"], ".tmp")
    found = set()
    for base, folders, files in os.walk(folder):
        found.update(os.path.join(base, name) for name in folders + files)
    return found


def losses(logs):
    with open(logs / "mask_rcnn_test.csv") as stream:
        return [row["loss"] for row in csv.DictReader(stream)]


def test_area_read_from_disk_trains_as_the_area_in_memory(run_module, big_scene, tmp_path):
    bands, areas = big_scene
    before = temporary_entries()
    runs = {}
    for memory in (300, 1):
        logs = tmp_path / "memory{}".format(memory)
        result = run_module(TRAIN, "-s", **{**FAST, "classes": "1,2", "name": "test"},
                            input=",".join(bands), training_map=areas, class_column="value",
                            tile_size=64, overlap=16, logs=logs, epochs=1, seed=4,
                            sampling="random", memory=memory)
        assert result.returncode == 0, result.stderr
        runs[memory] = (logs, result.stderr)
    (logs, stderr), (disk_logs, disk_stderr) = runs[300], runs[1]
    assert "read from disk a window at a time" in disk_stderr
    assert "read from disk a window at a time" not in stderr
    for name in ("held_out.txt", "training_windows.txt"):
        assert (logs / name).read_text() == (disk_logs / name).read_text()
    assert len((logs / "training_windows.txt").read_text().splitlines()) > 2
    assert losses(logs) == losses(disk_logs) and losses(logs)
    assert temporary_entries() <= before  # the area's files went with the run
