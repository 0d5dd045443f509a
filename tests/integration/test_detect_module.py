"""i.ann.maskrcnn.detect through the module in a temporary GRASS project.

A small model learns squares and disks (tests/support/shapes.py) once per session;
the scenes to detect in are bigger than a tile, with objects on the tile seams.
"""
import json

import numpy as np
import pytest

from conftest import ROOT
from support.shapes import CLASS_COLORS, shapes_scene

pytestmark = pytest.mark.grass
DETECT = str(ROOT / "i.ann.maskrcnn.detect" / "i.ann.maskrcnn.detect.py")


@pytest.fixture(scope="session")
def shapes_model(tmp_path_factory):
    """A ResNet-18 trained on 128x128 shapes until mask AP50 >= 0.9, with its card."""
    import keras

    from maskrcnnlib.dataset.pipeline import prepare_sample, training_dataset
    from maskrcnnlib.evaluate import ImageInstances, evaluate
    from maskrcnnlib.model.inference import Detector
    from maskrcnnlib.model.training import MaskRCNNTrainer, make_optimizer
    from maskrcnnlib.modelcard import write_card
    from maskrcnnlib.weights import copy_weights, save_weights_h5
    from support.models import small_config

    keras.utils.set_random_seed(2)
    config = small_config()
    config.learning_rate = 0.005  # 0.01 can diverge with 12 scenes
    rng = np.random.default_rng(10)
    scenes = [shapes_scene(rng, class_colors=True) for _ in range(12)]
    samples = [prepare_sample(*scene, config, i) for i, scene in enumerate(scenes)]
    order = np.random.default_rng(3)

    def shuffled():
        for i in order.permutation(len(samples)):
            yield samples[i]

    trainer = MaskRCNNTrainer(config, seed=2)
    trainer.compile(optimizer=make_optimizer(config))
    detector = Detector(config)
    references = [ImageInstances(masks, ids) for _, masks, ids in scenes]
    dataset = training_dataset(shuffled, config, seed=2)
    for _ in range(12):
        trainer.fit(dataset, epochs=1, steps_per_epoch=50, verbose=0)
        copy_weights(trainer, detector.model)
        results = detector.detect([image for image, _, _ in scenes])
        predictions = [ImageInstances(r["masks"], r["class_ids"], r["scores"])
                       for r in results]
        if evaluate(predictions, references)["AP50"] >= 0.95:
            break
    path = tmp_path_factory.mktemp("model") / "mask_rcnn_shapes_0001.h5"
    save_weights_h5(detector.model, path)
    write_card(path, config, {"epoch": 1})
    return path


def write_scene(name, image, grass_session):
    """Three band rasters holding image [rows, cols, 3] in the current region."""
    from grass.script import array as garray

    maps = []
    for band in range(image.shape[2]):
        raster = garray.array(dtype=np.float64)
        raster[...] = image[:, :, band]
        raster.write(f"{name}_{band}", overwrite=True)
        maps.append(f"{name}_{band}")
    return maps


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


def vector_rows(name):
    import grass.script as gs

    text = gs.read_command("v.db.select", map=name, separator="|", flags="c")
    return [line.split("|") for line in text.strip().splitlines() if line]


def test_objects_on_tile_seams_come_out_once(run_module, shapes_model, seam_scene):
    import grass.script as gs

    bands, objects = seam_scene
    result = run_module(DETECT, input=",".join(bands), model=shapes_model,
                        output="seam_objects", tile_size=128, overlap=32)
    assert result.returncode == 0, result.stderr
    info = gs.vector_info_topo("seam_objects")
    rows = vector_rows("seam_objects")
    assert info["areas"] == len(objects), (info["areas"], rows)
    assert sorted(r[1] for r in rows) == sorted(["square" if c == 1 else "disk"
                                                 for c, _ in objects])
    for row in rows:
        assert 0.5 <= float(row[3]) <= 1.0
    # each object's centre falls in an area of its class
    for class_id, mask in objects:
        cy, cx = np.argwhere(mask).mean(axis=0)
        east, north = 3000 + (cx + 0.5) * 2, 1512 - (cy + 0.5) * 2
        what = gs.read_command("v.what", map="seam_objects", coordinates=(east, north),
                               flags="a")
        assert ("square" if class_id == 1 else "disk") in what
    history = gs.read_command("v.info", map="seam_objects", flags="h")
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
    assert result.returncode != 0 and "3 bands" in result.stderr, result.stderr


def test_card_gives_the_classes(shapes_model):
    card = json.loads(shapes_model.with_suffix(".json").read_text())
    assert card["classes"] == ["square", "disk"]
