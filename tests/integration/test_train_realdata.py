"""Real 16-bit imagery through training and detection: the Danish Sentinel-2 field
parcels (tests/fixtures/realdata/denmark_fields: 3 bands UInt16, reflectance x 10000).

Starting from weights trained on 8-bit RGB, the module stretches each band's 2nd to
98th percentile onto 0..255 before the mean pixel (maskrcnnlib.dataset.radiometry);
the stretch is in the model card and detection applies it.
"""
import json

import numpy as np
import pytest

from conftest import ROOT
from test_train_module import write_dataset

pytestmark = pytest.mark.grass
TRAIN = str(ROOT / "i.ann.maskrcnn.train" / "i.ann.maskrcnn.train.py")
DETECT = str(ROOT / "i.ann.maskrcnn.detect" / "i.ann.maskrcnn.detect.py")
DENMARK = ROOT / "tests" / "fixtures" / "realdata" / "denmark_fields"
SMALL = {"backbone": "resnet18", "images_min_dim": 64, "images_max_dim": 64,
         "steps_per_epoch": 2, "validation_steps": 1, "rois_per_image": 16,
         "learning_rate": 0.001}


@pytest.fixture
def fields(grass_session):
    """The scene as rasters dk.1..3 and the parcels as areas of class 'field'."""
    import grass.script as gs

    gs.run_command("r.in.gdal", flags="o", input=DENMARK / "RGB_small.tif", output="dk",
                   overwrite=True, quiet=True)
    gs.run_command("v.in.ogr", flags="o", input=DENMARK / "marker2016_small.shp",
                   output="parcels", overwrite=True, quiet=True)
    gs.run_command("v.db.addcolumn", map="parcels", columns="kind text", quiet=True)
    gs.run_command("v.db.update", map="parcels", column="kind", value="field", quiet=True)
    gs.run_command("g.region", raster="dk.1")
    return ["dk.1", "dk.2", "dk.3"]


def test_16_bit_scene_trains_from_rgb_weights_and_detects(run_module, fields, tmp_path):
    from grass.script import array as garray

    # weights trained on 8-bit RGB shapes stand in for COCO's (no network here); no card:
    # a file from elsewhere
    start = run_module(TRAIN, **SMALL, classes="square,disk", name="rgb", epochs=1,
                       training_dataset=write_dataset(tmp_path / "shapes", count=2),
                       logs=tmp_path / "rgb")
    assert start.returncode == 0, start.stderr
    (tmp_path / "rgb" / "mask_rcnn_rgb_0001.json").unlink()
    result = run_module(TRAIN, "-e", **{**SMALL, "images_min_dim": 128,
                                        "images_max_dim": 128},
                        input=",".join(fields), training_map="parcels", class_column="kind",
                        classes="field", tile_size=128, overlap=16, name="dk", epochs=1,
                        model=tmp_path / "rgb" / "mask_rcnn_rgb_0001.h5", logs=tmp_path / "dk")
    assert result.returncode == 0, result.stderr
    card = json.loads((tmp_path / "dk" / "mask_rcnn_dk_0001.json").read_text())
    facts = card["normalization"]
    assert facts["method"] == "percentile stretch to 0..255, then minus the mean pixel"
    mean, std = np.array(card["config"]["pixel_mean"]), np.array(card["config"]["pixel_std"])
    # the stretch comes from the training chips (overlapping, so not exactly the scene's
    # cells): within a few percent of the scene's own percentiles
    for band, name in enumerate(fields):
        cells = np.asarray(garray.array(name)).ravel()
        low, high = np.percentile(cells, [2, 98])
        assert abs(facts["stretch"][band][0] - low) < 0.05 * (high - low), (band, facts)
        assert abs(facts["stretch"][band][1] - high) < 0.05 * (high - low), (band, facts)
        assert std[band] == pytest.approx((facts["stretch"][band][1] -
                                           facts["stretch"][band][0]) / 255)
        # 2nd percentile -> 0 - mean pixel, 98th -> 255 - mean pixel
        coco = (123.7, 116.8, 103.9)[band]
        assert (facts["stretch"][band][0] - mean[band]) / std[band] == pytest.approx(-coco)
    detected = run_module(DETECT, input=",".join(fields), output="dk_fields",
                          model=tmp_path / "dk" / "mask_rcnn_dk_0001.h5", tile_size=128,
                          overlap=16)
    assert detected.returncode == 0, detected.stderr
    import grass.script as gs

    assert gs.find_file("dk_fields", element="vector")["name"] == "dk_fields"
