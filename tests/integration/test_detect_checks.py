"""i.ann.maskrcnn.detect checks its input against the model card before any tile
runs (resolution, band count, value range), and -r detects at the model's
resolution on a resampled copy, leaving the region and the maps as they were."""
import json
import shutil

import pytest

from test_detect_module import DETECT, said, seam_scene, vector_rows  # noqa: F401

pytestmark = pytest.mark.grass

# what the card of a model trained on 2 m cells of scenes like seam_scene says
TRAINED_AT_2M = {
    "training_data": {"source": "grass", "nsres": 2.0, "ewres": 2.0},
    "normalization": {"method": "mean and standard deviation", "mean": [90.0] * 3,
                      "std": [30.0] * 3, "minimum": [0.0] * 3, "maximum": [255.0] * 3},
}


def model_with_card(shapes_model, directory, extra):
    """A copy of shapes_model whose card also holds extra."""
    path = directory / shapes_model.name
    shutil.copy(shapes_model, path)
    card = json.loads(shapes_model.with_suffix(".json").read_text())
    card.update(extra)
    path.with_suffix(".json").write_text(json.dumps(card))
    return path


@pytest.fixture
def model_2m(shapes_model, tmp_path):
    return model_with_card(shapes_model, tmp_path, TRAINED_AT_2M)


def leftovers():
    """Temporary rasters and regions of the library left in the mapset."""
    import grass.script as gs

    return [name for kind in ("raster", "region") for name in gs.list_strings(
        kind, pattern="tmp_maskrcnn_*", mapset=".")]


def test_resolution_off_by_more_than_the_factor_is_refused(run_module, model_2m, seam_scene):
    import grass.script as gs

    bands, _ = seam_scene
    gs.run_command("g.region", res=4)
    result = run_module(DETECT, input=",".join(bands), model=model_2m, output="coarse",
                        tile_size=128, overlap=32)
    message = said(result)
    assert result.returncode != 0
    assert "region's resolution (4)" in message and "(2)" in message, message
    assert "-r" in message and "g.region res=2" in message, message


def test_band_count_different_from_the_card_is_refused(run_module, model_2m, seam_scene):
    bands, _ = seam_scene
    result = run_module(DETECT, input=",".join(bands[:2]), model=model_2m, output="two",
                        tile_size=128, overlap=32)
    assert result.returncode != 0
    assert "takes 3 bands, 2 given" in said(result), result.stderr


def test_data_far_from_the_training_values_is_refused(run_module, model_2m, seam_scene):
    """16-bit-like values (x 100) for a model trained on 8-bit values."""
    import grass.script as gs

    bands, _ = seam_scene
    scaled = []
    for name in bands:
        gs.mapcalc(f"{name}_x100 = {name} * 100", overwrite=True, quiet=True)
        scaled.append(f"{name}_x100")
    result = run_module(DETECT, input=",".join(scaled), model=model_2m, output="scaled",
                        tile_size=128, overlap=32)
    message = said(result)
    assert result.returncode != 0
    assert "Band 1 <seam_0_x100>" in message, message
    assert "range 0..255" in message and "mean 90 ± 30" in message, message
    assert "the region holds mean" in message, message


def test_resample_needs_a_known_training_resolution(run_module, shapes_model, seam_scene):
    bands, _ = seam_scene
    result = run_module(DETECT, "-r", input=",".join(bands), model=shapes_model,
                        output="unknown_res", tile_size=128, overlap=32)
    assert result.returncode != 0 and "does not record" in said(result), result.stderr


def test_resample_leaves_nothing_behind_when_the_run_fails(run_module, model_2m, seam_scene):
    import grass.script as gs

    bands, _ = seam_scene
    gs.run_command("g.region", res=1)
    result = run_module(DETECT, "-r", input=",".join(bands), model=model_2m,
                        output="failed", reference="no_such_areas", tile_size=128,
                        overlap=32)
    assert result.returncode != 0 and "no_such_areas" in result.stderr, result.stderr
    assert leftovers() == []
    assert float(gs.region()["nsres"]) == 1


def areas_by_class(name):
    return sorted((row[1], float(row[4])) for row in vector_rows(name))


def test_resample_finds_what_the_model_resolution_finds(run_module, model_2m, seam_scene):
    """A 1 m region with -r gives the objects a run in the 2 m region gives; the
    region stays at 1 m and the input maps unchanged."""
    import grass.script as gs

    bands, objects = seam_scene
    before = [gs.raster_info(name)["nsres"] for name in bands]
    result = run_module(DETECT, input=",".join(bands), model=model_2m, output="at_2m",
                        tile_size=128, overlap=32)
    assert result.returncode == 0, result.stderr
    gs.run_command("g.region", res=1)
    region = gs.region()
    result = run_module(DETECT, "-r", input=",".join(bands), model=model_2m,
                        output="resampled", instances="resampled_ids", tile_size=128,
                        overlap=32)
    assert result.returncode == 0, result.stderr
    assert "resampled to 2 x 2" in said(result), result.stderr
    assert gs.region() == region
    assert [gs.raster_info(name)["nsres"] for name in bands] == before
    assert leftovers() == []
    reference, resampled = areas_by_class("at_2m"), areas_by_class("resampled")
    assert len(reference) == len(objects)
    assert [name for name, _ in resampled] == [name for name, _ in reference]
    for (_, area), (_, expected) in zip(resampled, reference):
        assert area == pytest.approx(expected, rel=0.05)
    # the raster output comes back in the user's 1 m region, ids of the vector's objects
    assert float(gs.raster_info("resampled_ids")["nsres"]) == 1
    ids = gs.read_command("r.stats", input="resampled_ids", flags="nc").split()
    areas = {int(row[0]): float(row[4]) for row in vector_rows("resampled")}
    cells = dict(zip(map(int, ids[::2]), map(int, ids[1::2])))
    assert set(cells) == set(areas)
    for cat, count in cells.items():
        assert count == pytest.approx(areas[cat], rel=0.05)  # 1 m2 cells
