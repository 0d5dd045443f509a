"""GRASS conventions of both modules (issue 18, item 5), through the modules in a
temporary GRASS project: group=/subgroup= instead of band lists, layer=/where= on the
vector inputs, classes= taken from the model card or the data, nprocs= and memory=.

Detection uses test_detect_module's model and seam scene; training test_train_module's
scene maps.
"""
import json

import numpy as np
import pytest

from support.grass_helpers import error_message
from test_detect_module import (DETECT, object_cells, said, seam_scene,  # noqa: F401
                                vector_rows)
from test_detect_module import seam_truth  # noqa: F401
from test_detect_outputs import raster_values
from test_train_module import FAST, TRAIN, scene_maps, write_dataset  # noqa: F401

pytestmark = pytest.mark.grass
TILING = {"tile_size": 128, "overlap": 32}


def detections(name):
    """{frozenset of cells: (class, score)} of a vector map: what was found, whatever
    the categories."""
    cells = object_cells(name)
    rows = {int(row[0]): row for row in vector_rows(name)}
    return {frozenset(cells[cat]): (rows[cat][1], round(float(rows[cat][3]), 6))
            for cat in cells}


def make_group(group, rasters, subgroup=None, subgroup_rasters=None):
    import grass.script as gs

    gs.run_command("i.group", group=group, input=rasters, quiet=True)
    if subgroup:
        gs.run_command("i.group", group=group, subgroup=subgroup, input=subgroup_rasters,
                       quiet=True)


def test_group_and_subgroup_give_the_band_lists_detections(run_module, shapes_model,
                                                           seam_scene):
    """group= takes the group's rasters in the group's order, subgroup= its subgroup's:
    the same objects as input= with those rasters; the card's classes are said."""
    import grass.script as gs

    bands, _ = seam_scene
    result = run_module(DETECT, input=",".join(bands), model=shapes_model,
                        output="by_list", **TILING)
    assert result.returncode == 0, result.stderr
    assert "Classes (the model card of {}; ids 1..2 in this order): square,disk".format(
        shapes_model) in said(result)
    expected = detections("by_list")
    assert len(expected) == 4

    make_group("seam_rgb", bands)
    result = run_module(DETECT, group="seam_rgb", model=shapes_model, output="by_group",
                        **TILING)
    assert result.returncode == 0, result.stderr
    assert detections("by_group") == expected
    assert {row[-1] for row in vector_rows("by_group")} == {"seam_rgb"}  # source

    # the group in another order (and a raster more); its subgroup in the model's
    gs.mapcalc("seam_extra = 1", quiet=True)
    make_group("seam_all", ["seam_extra"] + bands[::-1], "rgb", bands)
    result = run_module(DETECT, group="seam_all", subgroup="rgb", model=shapes_model,
                        output="by_subgroup", **TILING)
    assert result.returncode == 0, result.stderr
    assert detections("by_subgroup") == expected
    # the group itself has 4 bands: refused, naming both counts
    result = run_module(DETECT, group="seam_all", model=shapes_model, output="by_all",
                        **TILING)
    assert result.returncode != 0 and "takes 3 bands, 4 given" in said(result), result.stderr


def test_group_input_errors(run_module, shapes_model, seam_scene):
    bands, _ = seam_scene
    make_group("seam_err", bands)
    cases = [({"group": "nosuchgroup"}, "Imagery group <nosuchgroup> not found"),
             ({"group": "seam_err", "subgroup": "nosuch"}, "has no subgroup <nosuch>"),
             ({"group": "seam_err", "input": ",".join(bands)}, ""),
             ({"subgroup": "nosuch", "input": ",".join(bands)}, "")]
    for options, message in cases:
        result = run_module(DETECT, model=shapes_model, output="bad_group", **options,
                            **TILING)
        assert result.returncode != 0, options
        assert message in error_message(result.stderr), result.stderr


def test_memory_and_nprocs_change_nothing_found(run_module, shapes_model, seam_scene):
    """memory=1: every 128-cell tile (0.6 MB of buffers) is read and run alone, the score
    raster built in strips; nprocs=1: TensorFlow on one thread. The vector map and the
    rasters are those of a run with the defaults, cell for cell."""
    bands, _ = seam_scene
    runs = {}
    for name, options in (("mem_default", {}), ("mem_small", {"memory": 1, "nprocs": 1})):
        result = run_module(DETECT, input=",".join(bands), model=shapes_model, output=name,
                            instances=name + "_ids", scores=name + "_scores", **options,
                            **TILING)
        assert result.returncode == 0, result.stderr
        runs[name] = said(result)
    assert "pieces" not in runs["mem_default"] and "nprocs" not in runs["mem_default"]
    assert "memory=1 MB: rows of tiles are read in pieces of at most 1 tiles" in \
        runs["mem_small"]
    assert "nprocs=1: TensorFlow computes on 1 threads, 1 steps at once" in runs["mem_small"]
    # one thread sums in another order than two: scores may differ in the 7th digit
    found_small, found_default = detections("mem_small"), detections("mem_default")
    assert found_small.keys() == found_default.keys()
    for cells, (kind, score) in found_small.items():
        assert kind == found_default[cells][0] and abs(score - found_default[cells][1]) < 1e-5
    small, default = vector_rows("mem_small"), vector_rows("mem_default")
    assert [row[:3] + row[4:] for row in small] == [row[:3] + row[4:] for row in default]
    assert np.allclose([float(row[3]) for row in small], [float(row[3]) for row in default],
                       rtol=0, atol=1e-5)
    assert np.array_equal(raster_values("mem_small_ids", 0), raster_values("mem_default_ids", 0))
    assert np.allclose(raster_values("mem_small_scores", -1),
                       raster_values("mem_default_scores", -1), rtol=0, atol=1e-5)


def test_reference_where_selects_the_reference_areas(run_module, shapes_model, seam_scene,
                                                     seam_truth, tmp_path):
    """reference_where= keeps the reference areas it selects (here the disks): the
    squares have no reference left; a condition selecting none is refused before any
    detection, and so is one the database refuses."""
    import grass.script as gs

    bands, objects = seam_scene
    report = tmp_path / "disks.json"
    result = run_module(DETECT, input=",".join(bands), model=shapes_model,
                        output="seam_disks", reference=seam_truth, reference_column="kind",
                        reference_layer=1, reference_where="kind = 'disk'", report=report,
                        **TILING)
    assert result.returncode == 0, result.stderr
    figures = json.loads(report.read_text())
    assert figures["classes"]["disk"]["references"] == sum(c == 2 for c, _ in objects) == 2
    assert figures["classes"]["square"]["references"] == 0
    assert figures["reference_where"] == "kind = 'disk'"
    for where, message in (("kind = 'pool'", "selects no areas"),
                           ("nosuchcolumn = 1", "cannot select")):
        result = run_module(DETECT, input=",".join(bands), model=shapes_model,
                            output="seam_nowhere", reference=seam_truth,
                            reference_column="kind", reference_where=where, **TILING)
        assert result.returncode != 0
        text = error_message(result.stderr)
        assert "reference_where=<{}> {}".format(where, message) in text, result.stderr
        assert "tiles done" not in said(result)
        assert not gs.find_file("seam_nowhere", element="vector")["fullname"]


def test_train_from_a_subgroup_with_where_and_classes_from_the_column(run_module,
                                                                      scene_maps,
                                                                      tmp_path):
    """group=/subgroup= give the bands in the subgroup's order (the card records them);
    where= selects the training areas and, without classes=, the class column's values
    among them are the classes; nprocs=1 and memory= go through."""
    import grass.script as gs

    bands, areas = scene_maps
    gs.mapcalc("tr_extra = 1", quiet=True, overwrite=True)
    order = [bands[2], bands[0], bands[1]]
    make_group("tr_all", ["tr_extra"] + bands, "three", order)
    logs = tmp_path / "logs"
    options = dict(FAST, group="tr_all", subgroup="three", training_map=areas,
                   class_column="kind", where="kind = 'disk'", tile_size=64, overlap=16,
                   logs=logs, epochs=1, nprocs=1, memory=1, name="test")
    result = run_module(TRAIN, **options)
    assert result.returncode == 0, result.stderr
    text = said(result)
    assert "Classes from column <kind> of <{}> (ids 1..1 in this order): disk".format(
        areas) in text
    assert "nprocs=1: TensorFlow computes on 1 threads" in text
    card = json.loads((logs / "mask_rcnn_test_0001.json").read_text())
    mapset = gs.gisenv()["MAPSET"]
    assert card["band_names"] == ["{}@{}".format(name, mapset) for name in order]
    assert card["classes"] == ["disk"]
    data = card["training_data"]
    assert data["where"] == "kind = 'disk'"
    assert set(data["instances_per_class"]) == {"disk"} and data["instances_per_class"]["disk"]

    result = run_module(TRAIN, **dict(options, where="kind = 'tree'",
                                      logs=tmp_path / "none"))
    assert result.returncode != 0
    assert "where=<kind = 'tree'> selects no areas" in error_message(result.stderr)
    assert not list((tmp_path / "none").glob("*.h5"))


def test_train_from_a_directory_takes_the_classes_of_the_mask_names(run_module, tmp_path):
    dataset = write_dataset(tmp_path / "dataset", count=2)
    logs = tmp_path / "logs"
    result = run_module(TRAIN, **FAST, training_dataset=dataset, logs=logs, epochs=1,
                        name="test")
    assert result.returncode == 0, result.stderr
    names = sorted({path.stem.split("-")[1] for path in dataset.glob("*/*-*.png")})
    assert "Classes from the mask file names of {} (ids 1..{} in this order): {}".format(
        dataset, len(names), ",".join(names)) in said(result)
    card = json.loads((logs / "mask_rcnn_test_0001.json").read_text())
    assert card["classes"] == names


def test_train_memory_default_is_the_librarys(addon):
    """memory= of train has no answer in the header (TrainJob's None means the library's
    default); GRASS's standard default must be that value."""
    import subprocess
    import xml.etree.ElementTree as ET

    from maskrcnnlib.grassio.chips import AREA_MEMORY_MB

    installed = str(addon["base"] / "scripts" / "i.ann.maskrcnn.train")
    result = subprocess.run(["/usr/bin/python3", installed, "--interface-description"],
                            env=addon["env"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    task = ET.fromstring(result.stdout)
    memory = next(p for p in task.findall("parameter") if p.get("name") == "memory")
    assert int(memory.findtext("default").strip()) == AREA_MEMORY_MB
