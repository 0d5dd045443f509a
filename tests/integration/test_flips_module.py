"""Test-time flips through i.ann.maskrcnn.detect (-t) with a model trained through
i.ann.maskrcnn.train, and maskrcnnlib.flips on the same model (issue 21)."""
import numpy as np
import pytest
from skimage import io

from conftest import ROOT
from support.grass_helpers import write_bands
from support.shapes import shapes_scene

pytestmark = pytest.mark.grass
TRAIN = str(ROOT / "i.ann.maskrcnn.train" / "i.ann.maskrcnn.train.py")
DETECT = str(ROOT / "i.ann.maskrcnn.detect" / "i.ann.maskrcnn.detect.py")
NAMES = ("square", "disk")


@pytest.fixture(scope="module")
def quick_model(tmp_path_factory, grass_session):
    """A ResNet-18 trained 30 steps on three 64 x 64 scenes (it detects something), and
    a 128 x 128 scene of the same kind."""
    import subprocess

    path = tmp_path_factory.mktemp("flips")
    rng = np.random.default_rng(21)
    for index in range(3):
        image, masks, class_ids = shapes_scene(rng, size=64, count=(1, 3), radius=(6, 10))
        folder = path / "dataset" / f"s{index}"
        folder.mkdir(parents=True)
        io.imsave(folder / f"s{index}.png", image, check_contrast=False)
        for n, class_id in enumerate(class_ids):
            io.imsave(folder / f"s{index}-{NAMES[class_id - 1]}-{n}.png",
                      (masks[:, :, n] * 255).astype(np.uint8), check_contrast=False)
    options = {"training_dataset": path / "dataset", "logs": path / "logs", "name": "flips",
               "backbone": "resnet18", "images_min_dim": 64, "images_max_dim": 64,
               "steps_per_epoch": 30, "validation_steps": 1, "rois_per_image": 16,
               "learning_rate": 0.01, "epochs": 1, "seed": 5, "classes": ",".join(NAMES)}
    result = subprocess.run([TRAIN] + [f"{k}={v}" for k, v in options.items()],
                            env=grass_session, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    scene, _, _ = shapes_scene(rng, size=128, count=(4, 6), radius=(6, 10))
    return path / "logs" / "mask_rcnn_flips_0001.h5", scene


def test_flips_keep_the_detections_and_average_their_masks(quick_model):
    """detect_with_flips keeps the plain run's boxes, classes and scores (the batch of
    three may round them a little differently) and changes masks."""
    from maskrcnnlib.flips import detect_with_flips
    from maskrcnnlib.model.inference import Detector
    from maskrcnnlib.modelcard import config_for_weights

    weights, scene = quick_model
    config = config_for_weights(weights)
    config.detection_min_confidence = 0.0
    detector = Detector(config)
    detector.load_weights(weights)
    image = scene[:64, :64]
    plain = detector.detect([image])[0]
    flipped = detect_with_flips(detector, [image])[0]
    assert len(plain["rois"]) > 0
    assert len(flipped["rois"]) == len(plain["rois"])
    assert np.abs(flipped["rois"] - plain["rois"]).max() <= 1
    np.testing.assert_array_equal(flipped["class_ids"], plain["class_ids"])
    np.testing.assert_allclose(flipped["scores"], plain["scores"], atol=1e-3)
    assert flipped["masks"].shape == plain["masks"].shape
    # the averaged masks differ from the plain ones somewhere: three views disagree
    assert (flipped["masks"] != plain["masks"]).any()


def test_module_detects_with_test_time_flips(run_module, quick_model):
    import grass.script as gs

    weights, scene = quick_model
    gs.run_command("g.region", n=128, s=0, w=0, e=128, res=1)
    bands = write_bands(scene, "flips")
    common = {"input": bands, "model": weights, "tile_size": 64, "overlap": 16,
              "score_threshold": 0.0, "min_area": 1}
    flipped = run_module(DETECT, "-t", output="flips_t", **common)
    assert flipped.returncode == 0, flipped.stderr
    assert "-t:" in flipped.stderr
    plain = run_module(DETECT, output="flips_plain", **common)
    assert plain.returncode == 0, plain.stderr
    assert "-t:" not in plain.stderr
    assert gs.vector_info_topo("flips_t")["areas"] > 0
    assert gs.vector_info_topo("flips_plain")["areas"] > 0
