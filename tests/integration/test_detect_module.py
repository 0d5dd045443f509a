"""i.ann.maskrcnn.detect through the module in a temporary GRASS project.

A small model learns squares and disks (tests/support/shapes.py) once per session
(tests/conftest.py's shapes_model, shared by every detect test module);
the scenes to detect in are bigger than a tile, with objects on the tile seams.
"""
import json

import numpy as np
import pytest

from conftest import ROOT
from support.grass_helpers import write_bands
from support.shapes import CLASS_COLORS

pytestmark = pytest.mark.grass
DETECT = str(ROOT / "i.ann.maskrcnn.detect" / "i.ann.maskrcnn.detect.py")


def write_scene(name, image, grass_session):
    """Three band rasters holding image [rows, cols, 3] in the current region: their
    names."""
    return write_bands(image, name).split(",")


@pytest.fixture
def seam_scene(grass_session):
    """A 256x256 region (res 2 m, shifted origin) with objects on the seams of 128-cell tiles."""
    import grass.script as gs

    gs.run_command("g.region", n=1512, s=1000, w=3000, e=3512, res=2)
    image = np.random.default_rng(4).normal(90, 12, (256, 256, 3))
    yy, xx = np.mgrid[:256, :256]
    objects = [  # (class, mask): squares class 1, disks class 2
        (1, (abs(yy - 128) <= 11) & (abs(xx - 60) <= 11)),  # on the horizontal seam
        (2, (yy - 60) ** 2 + (xx - 128) ** 2 <= 12 ** 2),  # on the vertical seam
        (2, (yy - 128) ** 2 + (xx - 128) ** 2 <= 12 ** 2),  # on both seams
        (1, (abs(yy - 200) <= 10) & (abs(xx - 200) <= 10)),  # inside one tile
    ]
    for class_id, mask in objects:
        image[mask] = CLASS_COLORS[class_id]
    return write_scene("seam", np.clip(image, 0, 255), grass_session), objects


def said(result):
    """The module's stderr with GRASS's line wrapping undone."""
    return " ".join(result.stderr.split())


def vector_rows(name):
    import grass.script as gs

    text = gs.read_command("v.db.select", map=name, separator="|", flags="c")
    return [line.split("|") for line in text.strip().splitlines() if line]


def object_cells(name):
    """{cat: set of flat cell indices} of a vector map's areas in the current region."""
    import grass.script as gs
    from grass.script import array as garray

    raster = name + "_cells"
    gs.run_command("v.to.rast", input=name, output=raster, use="cat", type="area",
                   overwrite=True, quiet=True)
    cats = np.asarray(garray.array(raster, null=0)).astype(np.int64).ravel()
    gs.run_command("g.remove", flags="f", type="raster", name=raster, quiet=True)
    return {int(cat): set(np.flatnonzero(cats == cat)) for cat in np.unique(cats) if cat}


def test_objects_on_tile_seams_come_out_once(run_module, shapes_model, seam_scene):
    """Tiles of 128 cells cut three objects; the tiled run must give what one
    256-cell tile (no seam at all) gives: the same objects, once each."""
    import grass.script as gs

    bands, objects = seam_scene
    for output, tile_size, overlap in (("seam_whole", 256, 0), ("seam_tiled", 128, 32)):
        result = run_module(DETECT, input=",".join(bands), model=shapes_model,
                            output=output, tile_size=tile_size, overlap=overlap)
        assert result.returncode == 0, result.stderr
    whole, tiled = object_cells("seam_whole"), object_cells("seam_tiled")
    rows = {int(r[0]): r for r in vector_rows("seam_tiled")}
    reference = {int(r[0]): r for r in vector_rows("seam_whole")}
    # the model finds every object of the scene in one tile
    for _, mask in objects:
        inside = set(np.flatnonzero(mask))
        assert [cat for cat, cells in whole.items()
                if len(cells & inside) > 0.5 * len(inside)], "an object was missed"
    # one-to-one: every feature of the whole run has exactly one tiled feature on it
    # (matched at IoU 0.5, as detections are matched: with this small model the
    # outline of an object merged across a seam can differ from the whole run's by a
    # fifth of its cells, and outline quality is not what this test is about)
    assert len(tiled) == len(whole), (rows, reference)
    for cat, cells in whole.items():
        matches = [other for other, tiled_cells in tiled.items()
                   if len(cells & tiled_cells) / len(cells | tiled_cells) >= 0.5]
        assert len(matches) == 1, (reference[cat], rows, [
            (other, len(cells & c), len(cells), len(c)) for other, c in tiled.items()])
        if float(reference[cat][3]) >= 0.9:  # where the model is sure, the class agrees
            assert rows[matches[0]][1] == reference[cat][1], (reference[cat], rows)
    for row in rows.values():
        assert 0.5 <= float(row[3]) <= 1.0
        assert float(row[4]) == 4 * len(tiled[int(row[0])])  # area: cells of 2 m x 2 m
    history = gs.read_command("v.info", map="seam_tiled", flags="h")
    assert "i.ann.maskrcnn.detect" in history


def test_existing_output_needs_overwrite(run_module, shapes_model, seam_scene):
    bands, _ = seam_scene
    args = {"input": ",".join(bands), "model": shapes_model, "output": "seam_twice",
            "tile_size": 128, "overlap": 32}
    assert run_module(DETECT, **args).returncode == 0
    result = run_module(DETECT, **args)
    assert result.returncode != 0 and "seam_twice" in result.stderr
    assert run_module(DETECT, "--overwrite", **args).returncode == 0


def test_band_count_must_fit_the_model(run_module, shapes_model, seam_scene):
    bands, _ = seam_scene
    result = run_module(DETECT, input=",".join(bands[:2]), model=shapes_model,
                        output="seam_two_bands", tile_size=128, overlap=32)
    # GRASS wraps long messages: where it breaks depends on the model's path
    assert result.returncode != 0 and "3 bands" in " ".join(result.stderr.split()), \
        result.stderr


def test_card_gives_the_classes(shapes_model):
    card = json.loads(shapes_model.with_suffix(".json").read_text())
    assert card["classes"] == ["square", "disk"]


def object_centres(objects):
    """(class name, east, north) of each object's centre in the seam scene."""
    centres = []
    for class_id, mask in objects:
        cy, cx = np.argwhere(mask).mean(axis=0)
        centres.append(("square" if class_id == 1 else "disk",
                        3000 + (cx + 0.5) * 2, 1512 - (cy + 0.5) * 2))
    return centres


def points_of(name):
    """[(east, north, cat)] of a vector map's points."""
    import grass.script as gs

    text = gs.read_command("v.out.ascii", input=name, format="point", separator="|")
    return [(float(e), float(n), int(c)) for e, n, c in
            (line.split("|")[:3] for line in text.strip().splitlines() if line)]


def inside(mask, east, north):
    """Whether the seam scene cell under (east, north) belongs to mask."""
    return bool(mask[int((1512 - north) // 2), int((east - 3000) // 2)])


def test_points_in_one_map_per_class(run_module, shapes_model, seam_scene):
    """No output=: the 2018 behaviour, one map per class named after it; here points."""
    import grass.script as gs

    bands, objects = seam_scene
    gs.run_command("g.remove", flags="f", type="vector", name="square,disk", quiet=True)
    result = run_module(DETECT, input=",".join(bands), model=shapes_model,
                        output_type="point", tile_size=128, overlap=32)
    assert result.returncode == 0, result.stderr
    found = []
    for name in ("square", "disk"):
        if not gs.find_file(name, element="vector")["fullname"]:
            continue  # a class without objects gets no map, as in 2018
        info = gs.vector_info_topo(name)
        assert info["areas"] == 0 and info["points"] == len(vector_rows(name))
        assert {row[1] for row in vector_rows(name)} == {name}
        found += points_of(name)
    # every object holds exactly one point (a point is the mean of its cells)
    assert len(found) == len(objects)
    for _, mask in objects:
        assert sum(inside(mask, east, north) for east, north, _ in found) == 1


def test_areas_and_points_share_the_category(run_module, shapes_model, seam_scene):
    import grass.script as gs

    bands, objects = seam_scene
    result = run_module(DETECT, input=",".join(bands), model=shapes_model,
                        output="seam_both", output_type="area,point", tile_size=128,
                        overlap=32)
    assert result.returncode == 0, result.stderr
    info = gs.vector_info_topo("seam_both")
    rows = vector_rows("seam_both")
    assert info["areas"] == info["points"] == len(rows) == len(objects), (info, rows)
    cells = object_cells("seam_both")
    for east, north, cat in points_of("seam_both"):
        cell = int((1512 - north) // 2) * 256 + int((east - 3000) // 2)
        assert cell in cells[cat]  # each point lies in the area of its category


def test_null_cells_never_become_objects(run_module, shapes_model, seam_scene):
    """The eastern half of the first band is null: nothing is found there."""
    import grass.script as gs

    bands, objects = seam_scene
    gs.mapcalc("seam_holed = if(x() > 3256, null(), {})".format(bands[0]), overwrite=True)
    result = run_module(DETECT, input=",".join(["seam_holed"] + bands[1:]),
                        model=shapes_model, output="seam_nulls", tile_size=128, overlap=32)
    assert result.returncode == 0, result.stderr
    cells = set().union(*object_cells("seam_nulls").values())
    assert cells and max(cell % 256 for cell in cells) < 128
    # the square wholly in the western half is still found
    _, east, north = object_centres(objects)[0]
    assert "square" in gs.read_command("v.what", map="seam_nulls", coordinates=(east, north),
                                       flags="a")


def test_region_outside_the_input_is_an_error(run_module, shapes_model, seam_scene,
                                              grass_session):
    import grass.script as gs

    bands, _ = seam_scene
    env = dict(grass_session,
               GRASS_REGION=gs.region_env(n=10512, s=10000, w=3000, e=3512, res=2))
    result = run_module(DETECT, input=",".join(bands), model=shapes_model,
                        output="seam_outside", tile_size=128, overlap=32, env=env)
    assert result.returncode != 0 and "not overlap the computational region" in said(result), result.stderr
    assert not gs.find_file("seam_outside", element="vector")["fullname"]


def test_nothing_found_gives_an_empty_map_and_a_warning(run_module, shapes_model,
                                                         seam_scene, grass_session):
    import grass.script as gs

    write_scene("flat", np.full((256, 256, 3), 90.0), grass_session)
    result = run_module(DETECT, input="flat_0,flat_1,flat_2", model=shapes_model,
                        output="seam_empty", tile_size=128, overlap=32)
    assert result.returncode == 0, result.stderr
    assert "No objects detected" in said(result)
    assert gs.vector_info_topo("seam_empty")["areas"] == 0
    columns = gs.read_command("v.info", map="seam_empty", flags="c")
    for column in ("class", "class_id", "score", "area"):
        assert "|" + column in columns


@pytest.mark.parametrize("tiling, message", [
    ({"tile_size": 32, "overlap": 0}, "tile_size"),
    ({"tile_size": 128, "overlap": 64}, "overlap"),
])
def test_bad_tiling_is_refused(run_module, shapes_model, seam_scene, tiling, message):
    import grass.script as gs

    bands, _ = seam_scene
    result = run_module(DETECT, input=",".join(bands), model=shapes_model,
                        output="seam_bad_tiles", **tiling)
    assert result.returncode != 0 and message in said(result), result.stderr
    assert not gs.find_file("seam_bad_tiles", element="vector")["fullname"]


def write_png(path, image, west=None, north=None, res=2):
    """An 8-bit RGB PNG, and its world file (.pgw) when west/north are given."""
    from PIL import Image

    Image.fromarray(np.clip(np.round(image), 0, 255).astype(np.uint8)).save(path)
    if west is not None:
        # world file: cell size, rotations, and the centre of the north-west cell
        path.with_suffix(".pgw").write_text("{r}\n0\n0\n-{r}\n{x}\n{y}\n".format(
            r=res, x=west + res / 2, y=north - res / 2))


def scene_image(bands):
    from grass.script import array as garray

    return np.dstack([np.asarray(garray.array(name)) for name in bands])


def test_images_directory_with_world_files(run_module, shapes_model, seam_scene, tmp_path):
    """-e: the seam scene as a PNG + world file is found where it lies; a second image
    outside the region is skipped; no imported raster is left behind."""
    import grass.script as gs

    bands, objects = seam_scene
    folder = tmp_path / "images"
    folder.mkdir()
    image = scene_image(bands)
    write_png(folder / "scene.png", image, west=3000, north=1512)
    write_png(folder / "far.png", image, west=90000, north=1512)
    (folder / "notes.txt").write_text("not an image")
    before = set(gs.list_strings("raster"))
    result = run_module(DETECT, "-e", images_directory=folder, images_format="png",
                        model=shapes_model, output="from_files", tile_size=128, overlap=32)
    assert result.returncode == 0, result.stderr
    assert "far.png" in said(result) and "outside" in said(result)
    assert set(gs.list_strings("raster")) == before
    assert gs.vector_info_topo("from_files")["areas"] == len(objects)
    for _, east, north in object_centres(objects):
        what = gs.read_command("v.what", map="from_files", coordinates=(east, north),
                               flags="a")
        assert "square" in what or "disk" in what


def test_images_directory_needs_the_world_file_with_e(run_module, shapes_model, seam_scene,
                                                      tmp_path):
    import grass.script as gs

    bands, _ = seam_scene
    folder = tmp_path / "bare"
    folder.mkdir()
    write_png(folder / "bare.png", scene_image(bands))  # no world file
    result = run_module(DETECT, "-e", images_directory=folder, images_format="png",
                        model=shapes_model, output="from_bare", tile_size=128, overlap=32)
    assert result.returncode != 0 and "bare.png" in said(result), result.stderr
    assert not gs.find_file("from_bare", element="vector")["fullname"]
    result = run_module(DETECT, images_directory=folder, images_format="jpg",
                        model=shapes_model, output="from_bare", tile_size=128, overlap=32)
    assert result.returncode != 0 and "No *.jpg" in said(result), result.stderr


@pytest.fixture
def seam_truth(seam_scene):
    """The seam scene's objects as reference areas, class names in column 'kind'."""
    import grass.script as gs
    from grass.script import array as garray

    _, objects = seam_scene
    ids = garray.array(dtype=np.int32)
    for number, (_, mask) in enumerate(objects, start=1):
        ids[mask] = number
    ids.write("seam_truth_ids", null=0, overwrite=True)
    gs.run_command("r.to.vect", flags="v", input="seam_truth_ids", output="seam_truth",
                   type="area", overwrite=True, quiet=True)
    gs.run_command("v.db.addcolumn", map="seam_truth", columns="kind varchar(10)", quiet=True)
    for number, (class_id, _) in enumerate(objects, start=1):
        gs.run_command("v.db.update", map="seam_truth", column="kind",
                       value="square" if class_id == 1 else "disk",
                       where="cat = {}".format(number), quiet=True)
    return "seam_truth"


def test_accuracy_against_reference_areas(run_module, shapes_model, seam_scene, seam_truth,
                                          tmp_path):
    """reference=: the printed table and the JSON report hold pycocotools' AP for the
    map's objects against the reference areas, and our precision / recall / F1."""
    from maskrcnnlib.evaluate import ImageInstances, evaluate
    from support.coco import coco_figures

    bands, objects = seam_scene
    report = tmp_path / "accuracy.json"
    args = {"input": ",".join(bands), "model": shapes_model, "output": "seam_assessed",
            "tile_size": 128, "overlap": 32, "reference": seam_truth,
            "reference_column": "kind", "report": report}
    result = run_module(DETECT, **args)
    assert result.returncode == 0, result.stderr
    # the table goes to standard output, columns intact
    table = result.stdout.splitlines()
    assert table[0].startswith("Accuracy against <seam_truth>"), result.stdout
    assert table[1].split() == ["class", "reference", "detected", "precision", "recall",
                                "F1", "AP50", "AP75", "mAP"]
    assert [line.split()[0] for line in table[2:]] == ["square", "disk", "mean"]
    figures = json.loads(report.read_text())
    assert {"AP50", "AP75", "mAP", "precision", "recall", "F1", "classes"} <= set(figures)
    assert set(figures["classes"]) == {"square", "disk"}

    cells = object_cells("seam_assessed")
    rows = {int(r[0]): r for r in vector_rows("seam_assessed")}
    found = np.zeros((256 * 256, len(cells)), bool)
    for column, cat in enumerate(sorted(cells)):
        found[sorted(cells[cat]), column] = True
    predictions = ImageInstances(found.reshape(256, 256, -1),
                                 [int(rows[cat][2]) for cat in sorted(cells)],
                                 [float(rows[cat][3]) for cat in sorted(cells)])
    references = ImageInstances(np.stack([mask for _, mask in objects], -1),
                                [class_id for class_id, _ in objects])
    theirs = coco_figures([references], [predictions], [1, 2])
    ours = evaluate([predictions], [references], class_ids=[1, 2])
    for class_id, name in ((1, "square"), (2, "disk")):
        reported = figures["classes"][name]
        assert reported["references"] == sum(c == class_id for c, _ in objects)
        assert reported["AP50"] == pytest.approx(theirs[class_id][0], abs=1e-6)
        assert reported["AP75"] == pytest.approx(theirs[class_id][5], abs=1e-6)
        assert reported["mAP"] == pytest.approx(np.mean(theirs[class_id]), abs=1e-6)
        for key in ("precision", "recall", "F1", "detections"):
            assert reported[key] == pytest.approx(ours["classes"][class_id][key])
    # the report is not replaced without --overwrite, and nothing else is left
    result = run_module(DETECT, **dict(args, output="seam_assessed_again"))
    assert result.returncode != 0 and "accuracy.json" in said(result)
    import grass.script as gs

    assert not [name for name in gs.list_strings("raster") if name.startswith("tmp_maskrcnn")]


def test_reference_classes_must_be_the_models(run_module, shapes_model, seam_scene,
                                              seam_truth):
    import grass.script as gs

    bands, _ = seam_scene
    gs.run_command("v.db.update", map=seam_truth, column="kind", value="pool",
                   where="cat = 1", quiet=True)
    result = run_module(DETECT, input=",".join(bands), model=shapes_model,
                        output="seam_badref", tile_size=128, overlap=32,
                        reference=seam_truth, reference_column="kind")
    assert result.returncode != 0 and "'pool'" in said(result), result.stderr
    assert not gs.find_file("seam_badref", element="vector")["fullname"]
    result = run_module(DETECT, input=",".join(bands), model=shapes_model,
                        output="seam_badref", tile_size=128, overlap=32,
                        reference=seam_truth, reference_column="nosuch")
    assert result.returncode != 0 and "nosuch" in said(result), result.stderr


def test_images_directory_reprojects_files_in_another_crs(run_module, shapes_model,
                                                          seam_scene, tmp_path):
    """Without -e, a GeoTIFF in WGS84 is reprojected (r.import) into a UTM project."""
    import subprocess

    import grass.script as gs

    bands, objects = seam_scene
    folder = tmp_path / "geotiffs"
    folder.mkdir()
    write_png(tmp_path / "scene.png", scene_image(bands))
    # 256 cells of about 2 m at 50 N on UTM 33's central meridian (15 E)
    subprocess.run(["gdal_translate", "-q", "-of", "GTiff", "-a_srs", "EPSG:4326",
                    "-a_ullr", "15.0", "50.0046", "15.0072", "50.0", str(tmp_path / "scene.png"),
                    str(folder / "scene.tif")], check=True)
    project = tmp_path / "utm"
    subprocess.run(["grass", "-e", "-c", "EPSG:32633", str(project)], check=True,
                   capture_output=True)
    script = tmp_path / "job.sh"
    script.write_text(
        "g.region n=5539100 s=5538600 w=500000 e=500500 res=2\n"
        "{} images_directory={} images_format=tif model={} output=found tile_size=128 "
        "overlap=32\n"
        "v.info -t map=found\n"
        "g.list type=raster\n".format(DETECT, folder, shapes_model))
    result = subprocess.run(["grass", str(project / "PERMANENT"), "--exec", "bash",
                             str(script)], capture_output=True, text=True,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-3000:]
    areas = int(dict(line.split("=", 1) for line in result.stdout.split()
                     if "=" in line)["areas"])
    assert areas >= len(objects) - 1, result.stdout  # reprojected, resampled objects
    assert "tmp_maskrcnn" not in result.stdout  # the imported rasters are gone
