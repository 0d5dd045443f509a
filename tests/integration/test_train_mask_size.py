"""mask_size= of i.ann.maskrcnn.train: a 56 x 56 mask head for new models, recorded in
the model card and rebuilt from it by i.ann.maskrcnn.detect (issue 21)."""
import json

import numpy as np
import pytest
from skimage import io

from conftest import ROOT
from support.grass_helpers import error_message, write_bands
from support.shapes import shapes_scene

pytestmark = pytest.mark.grass
TRAIN = str(ROOT / "i.ann.maskrcnn.train" / "i.ann.maskrcnn.train.py")
DETECT = str(ROOT / "i.ann.maskrcnn.detect" / "i.ann.maskrcnn.detect.py")
NAMES = ("square", "disk")
FAST = {"backbone": "resnet18", "images_min_dim": 64, "images_max_dim": 64,
        "steps_per_epoch": 2, "validation_steps": 1, "rois_per_image": 16,
        "learning_rate": 0.01, "epochs": 1, "seed": 5, "classes": ",".join(NAMES)}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Three 64 x 64 scenes in the directory layout, and the first one's image."""
    path = tmp_path_factory.mktemp("mask_size") / "dataset"
    rng = np.random.default_rng(21)
    first = None
    for index in range(3):
        image, masks, class_ids = shapes_scene(rng, size=64, count=(1, 3), radius=(6, 10))
        first = image if first is None else first
        folder = path / f"s{index}"
        folder.mkdir(parents=True)
        io.imsave(folder / f"s{index}.png", image, check_contrast=False)
        for n, class_id in enumerate(class_ids):
            io.imsave(folder / f"s{index}-{NAMES[class_id - 1]}-{n}.png",
                      (masks[:, :, n] * 255).astype(np.uint8), check_contrast=False)
    return path, first


def test_mask_size_56_is_trained_recorded_and_detected_with(run_module, scenes, tmp_path):
    import grass.script as gs

    from maskrcnnlib.model.inference import Detector
    from maskrcnnlib.modelcard import config_for_weights

    dataset, image = scenes
    logs = tmp_path / "logs"
    # 30 steps: enough for a ResNet-18 on these scenes to detect something at score 0
    result = run_module(TRAIN, training_dataset=dataset, logs=logs, name="fine",
                        mask_size=56, **{**FAST, "steps_per_epoch": 30})
    assert result.returncode == 0, result.stderr
    weights = logs / "mask_rcnn_fine_0001.h5"
    card = json.loads(weights.with_suffix(".json").read_text())
    assert card["config"]["mask_shape"] == [56, 56]
    assert card["config"]["mask_pool_size"] == 28

    # the network the card describes predicts 56 x 56 masks
    detector = Detector(config_for_weights(weights))
    assert not detector.load_weights(weights).missing
    outputs, _, _ = detector.raw([image])
    assert outputs[1].shape[2:4] == (56, 56)

    # and the detection module builds it from the card: masks come out as areas
    gs.run_command("g.region", n=64, s=0, w=0, e=64, res=1)
    bands = write_bands(image, "msize")
    result = run_module(DETECT, input=bands, model=weights, output="msize_found",
                        tile_size=64, overlap=0, score_threshold=0.0, min_area=1)
    assert result.returncode == 0, result.stderr
    assert gs.vector_info_topo("msize_found")["areas"] > 0


def test_default_mask_size_stays_28(run_module, scenes, tmp_path):
    """A run that does not ask keeps matterport's 28 x 28 head (the 2018 models' and
    mask_rcnn_coco.h5's), so its files detect as theirs did."""
    dataset, _ = scenes
    logs = tmp_path / "logs"
    result = run_module(TRAIN, training_dataset=dataset, logs=logs, name="plain", **FAST)
    assert result.returncode == 0, result.stderr
    card = json.loads((logs / "mask_rcnn_plain_0001.json").read_text())
    assert card["config"]["mask_shape"] == [28, 28] and card["config"]["mask_pool_size"] == 14


def test_other_mask_sizes_are_refused(run_module, scenes, tmp_path):
    dataset, _ = scenes
    logs = tmp_path / "logs"
    result = run_module(TRAIN, training_dataset=dataset, logs=logs, name="odd",
                        mask_size=40, **FAST)
    assert result.returncode != 0
    assert "mask_size" in error_message(result.stderr), result.stderr
    assert not logs.exists() or not list(logs.glob("*.h5"))


def test_library_refuses_other_mask_sizes():
    from maskrcnnlib.errors import TrainingError
    from maskrcnnlib.train_job import TrainJob, mask_head_size

    assert TrainJob(classes=None, logs="x", name="y").mask_size == 28
    assert mask_head_size(28) == (14, [28, 28])
    assert mask_head_size(56) == (28, [56, 56])
    for size in (14, 40, 112, "56"):
        with pytest.raises(TrainingError, match="mask_size"):
            mask_head_size(size)
