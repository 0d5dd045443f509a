"""i.ann.maskrcnn.train through the module in a temporary GRASS project."""
import csv
import json
import os
import shutil

import numpy as np
import pytest
from skimage import io

from conftest import ROOT
from support.grass_helpers import error_message
from support.shapes import shapes_scene

pytestmark = pytest.mark.grass
TRAIN = str(ROOT / "i.ann.maskrcnn.train" / "i.ann.maskrcnn.train.py")
CLASSES = "square,disk"
# Tiny and fast: a few steps of a ResNet-18 on 64x64 images.
FAST = {"backbone": "resnet18", "images_min_dim": 64, "images_max_dim": 64,
        "steps_per_epoch": 2, "validation_steps": 1, "rois_per_image": 16,
        "learning_rate": 0.01}


def write_dataset(path, count=4, size=64, seed=0, bands=3):
    """The original layout: <id>/<id>.png and <id>/<id>-<class>-<n>.png."""
    rng = np.random.default_rng(seed)
    names = CLASSES.split(",")
    for index in range(count):
        image, masks, class_ids = shapes_scene(rng, size=size, count=(1, 3),
                                               radius=(5, 9), bands=bands)
        folder = path / f"img{index}"
        folder.mkdir(parents=True)
        if bands == 3:
            io.imsave(folder / f"img{index}.png", image, check_contrast=False)
        else:
            io.imsave(folder / f"img{index}.tif", image, check_contrast=False)
        for n, class_id in enumerate(class_ids):
            io.imsave(folder / f"img{index}-{names[class_id - 1]}-{n}.png",
                      (masks[:, :, n] * 255).astype(np.uint8), check_contrast=False)
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data") / "dataset")


def train(run_module, *flags, **options):
    args = {**FAST, "classes": CLASSES, "name": "test", **options}
    return run_module(TRAIN, *flags, **args)


def history(logs, name="test"):
    with open(os.path.join(logs, f"mask_rcnn_{name}.csv")) as stream:
        return list(csv.DictReader(stream))


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory, grass_session):
    import subprocess

    logs = tmp_path_factory.mktemp("logs")
    args = {**FAST, "classes": CLASSES, "name": "test", "training_dataset": dataset,
            "logs": logs, "epochs": 2, "seed": 7}
    result = subprocess.run([TRAIN, "-s"] + [f"{k}={v}" for k, v in args.items()],
                            env=grass_session, capture_output=True, text=True)
    return logs, result


def test_directory_dataset_trains_and_writes_checkpoints(trained):
    logs, result = trained
    assert result.returncode == 0, result.stderr
    for epoch in (1, 2):
        assert (logs / f"mask_rcnn_test_{epoch:04d}.h5").is_file()
        card = json.loads((logs / f"mask_rcnn_test_{epoch:04d}.json").read_text())
        assert card["epoch"] == epoch and card["classes"] == ["square", "disk"]
        assert card["bands"] == 3 and len(card["config"]["pixel_mean"]) == 3
        assert len(card["history"]) == epoch
    assert "Epoch 2/2" in result.stderr and "s per step" in result.stderr
    assert "oneDNN custom operations" not in result.stderr  # no TensorFlow banners
    rows = history(logs)
    assert len(rows) == 2 and "val_loss" in rows[0]
    # the held-out images' mask AP after each epoch (same evaluator as detect's reference=)
    for row in rows:
        assert 0.0 <= float(row["val_AP50"]) <= 1.0 and 0.0 <= float(row["val_mAP"]) <= 1.0
    assert "val_AP50" in card["history"][-1] and "validation mask AP50" in result.stderr
    assert (logs / "held_out.txt").read_text().strip()
    assert (logs / "tensorboard").is_dir()
    assert not [p for p in os.listdir(logs) if p.endswith(".tmp")]


def test_checkpoint_and_card_load_for_detection(trained):
    from maskrcnnlib.model.inference import Detector
    from maskrcnnlib.modelcard import config_for_weights

    weights = trained[0] / "mask_rcnn_test_0002.h5"
    detector = Detector(config_for_weights(weights))
    report = detector.load_weights(weights)
    assert not report.missing
    image = np.zeros((64, 64, 3), np.uint8)
    assert detector.detect([image])[0]["masks"].shape[:2] == (64, 64)


def test_resume_continues_the_epoch_count(trained, dataset, run_module):
    logs, _ = trained
    result = train(run_module, training_dataset=dataset, logs=logs, epochs=3,
                   model=logs / "mask_rcnn_test_0002.h5")
    assert result.returncode == 0, result.stderr
    assert (logs / "mask_rcnn_test_0003.h5").is_file()
    card = json.loads((logs / "mask_rcnn_test_0003.json").read_text())
    assert card["epoch"] == 3 and len(card["history"]) == 3
    assert "Epoch 3/3" in result.stderr and "Epoch 1/" not in result.stderr


def test_same_seed_gives_the_same_losses(dataset, run_module, tmp_path):
    losses = []
    for run in ("a", "b"):
        logs = tmp_path / run
        result = train(run_module, training_dataset=dataset, logs=logs, epochs=1, seed=3)
        assert result.returncode == 0, result.stderr
        losses.append([row["loss"] for row in history(logs)])
    assert losses[0] == losses[1]


@pytest.fixture
def scene_maps(grass_session):
    """Three band rasters and training areas (class column 'kind') in a 128x128 region."""
    import grass.script as gs

    gs.run_command("g.region", n=128, s=0, e=128, w=0, res=1)
    rng = np.random.default_rng(5)
    image, masks, class_ids = shapes_scene(rng, size=128, count=(4, 6), radius=(7, 12))
    from grass.script import array as garray

    for band, name in enumerate(("tr_red", "tr_green", "tr_blue")):
        raster = garray.array(dtype=np.float64)
        raster[...] = image[:, :, band]
        raster.write(name, overwrite=True)
    names = CLASSES.split(",")
    lines = []
    for n in range(masks.shape[2]):
        rows, cols = np.nonzero(masks[:, :, n])
        north, south = 128 - rows.min(), 128 - rows.max() - 1
        west, east = cols.min(), cols.max() + 1
        lines.append(f"B 5\n {west} {south}\n {west} {north}\n {east} {north}\n"
                     f" {east} {south}\n {west} {south}\n"
                     f"C 1 1\n {(west + east) / 2} {(north + south) / 2}\n 1 {n + 1}")
    gs.write_command("v.in.ascii", input="-", output="tr_areas", format="standard", flags="n",
                     stdin="\n".join(lines), overwrite=True, quiet=True)
    gs.run_command("v.db.addtable", map="tr_areas", columns="kind text", quiet=True)
    for n, class_id in enumerate(class_ids):
        gs.run_command("v.db.update", map="tr_areas", column="kind",
                       value=names[class_id - 1], where=f"cat = {n + 1}", quiet=True)
    return ["tr_red", "tr_green", "tr_blue"], "tr_areas"


def test_grass_maps_train(run_module, scene_maps, tmp_path):
    bands, areas = scene_maps
    result = train(run_module, input=",".join(bands), training_map=areas,
                   class_column="kind", tile_size=64, overlap=16, logs=tmp_path / "logs",
                   epochs=1, chips_directory=tmp_path / "chips", augment="flip_rotate")
    assert result.returncode == 0, result.stderr
    card = json.loads((tmp_path / "logs" / "mask_rcnn_test_0001.json").read_text())
    assert card["band_names"] == bands and card["training_data"]["source"] == "grass"
    # chips are used at their size, not scaled to images_max_dim
    assert card["config"]["image_max_dim"] == 64 == card["config"]["image_min_dim"]
    assert any((tmp_path / "chips").iterdir())


def test_bad_inputs_name_the_problem(run_module, dataset, tmp_path):
    cases = []
    empty = tmp_path / "empty"
    empty.mkdir()
    cases.append(({"training_dataset": empty}, "empty"))
    nomask = write_dataset(tmp_path / "nomask", count=2)
    for mask in (nomask / "img1").glob("img1-*.png"):
        mask.unlink()
    cases.append(({"training_dataset": nomask}, "img1"))
    unknown = write_dataset(tmp_path / "unknown", count=2)
    next((unknown / "img0").glob("img0-*.png")).rename(unknown / "img0" / "img0-tree-9.png")
    cases.append(({"training_dataset": unknown}, "tree"))
    sizes = write_dataset(tmp_path / "sizes", count=2)
    io.imsave(sizes / "img0" / "img0-square-7.png", np.zeros((10, 10), np.uint8),
              check_contrast=False)
    cases.append(({"training_dataset": sizes}, "img0-square-7.png"))
    corrupt = write_dataset(tmp_path / "corrupt", count=2)
    (corrupt / "img1" / "img1.png").write_bytes(b"not an image")
    cases.append(({"training_dataset": corrupt}, "img1.png"))
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the logs directory should be")
    cases.append(({"training_dataset": dataset, "logs": blocked}, "logs directory"))
    for change, message in cases:
        options = {"training_dataset": dataset, "logs": tmp_path / "logs_bad", "epochs": 1,
                   **change}
        result = train(run_module, **options)
        assert result.returncode != 0, change
        assert message in error_message(result.stderr), result.stderr
        assert not list((tmp_path / "logs_bad").glob("*.h5")), change


def test_band_count_must_fit_the_initial_model(run_module, trained, tmp_path):
    four = write_dataset(tmp_path / "four", count=2, bands=4)
    result = train(run_module, training_dataset=four, logs=tmp_path / "logs", epochs=1,
                   model=trained[0] / "mask_rcnn_test_0001.h5")
    assert result.returncode != 0 and "bands" in error_message(result.stderr), result.stderr


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(run_module, trained, dataset,
                                                          tmp_path):
    """A run resumed from a good epoch-2 checkpoint diverges in epoch 3: it stops with
    an error that names that checkpoint as the last good one and the learning rate as
    the likely cause, leaves the checkpoint as it was and writes nothing for epoch 3
    (a run that saved the diverged weights, or named another file, fails here)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    for suffix in (".h5", ".json"):
        shutil.copy(trained[0] / f"mask_rcnn_test_0002{suffix}", logs)
    good = logs / "mask_rcnn_test_0002.h5"
    before = good.read_bytes()
    result = train(run_module, training_dataset=dataset, logs=logs, epochs=4,
                   learning_rate=1e30, steps_per_epoch=3, model=good)
    assert result.returncode != 0
    message = error_message(result.stderr)
    assert "Training stopped" in message and "epoch 3" in message, result.stderr
    assert f"The last good checkpoint is {good}." in message and "learning_rate" in message
    assert good.read_bytes() == before
    assert sorted(p.name for p in logs.glob("mask_rcnn_test_*")) == [
        "mask_rcnn_test_0002.h5", "mask_rcnn_test_0002.json"]


def test_training_map_errors(run_module, scene_maps, tmp_path):
    bands, areas = scene_maps
    result = train(run_module, input=",".join(bands), training_map=areas,
                   class_column="nosuchcolumn", logs=tmp_path / "logs", epochs=1)
    assert result.returncode != 0
    assert "nosuchcolumn" in error_message(result.stderr), result.stderr
    import grass.script as gs

    gs.run_command("g.region", n=1000, s=900, e=1000, w=900, res=1)
    try:
        result = train(run_module, input=",".join(bands), training_map=areas,
                       class_column="kind", logs=tmp_path / "logs2", epochs=1)
    finally:
        gs.run_command("g.region", n=128, s=0, e=128, w=0, res=1)
    assert result.returncode != 0 and "region" in error_message(result.stderr), result.stderr


@pytest.fixture(scope="module")
def matterport_file(tmp_path_factory):
    """A card-less matterport-layout ResNet-50 file, 2 classes + background."""
    import sys

    sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
    import parity_weights

    layout = parity_weights.read_layout(ROOT / "tests" / "fixtures" / "matterport" /
                                        "layout.json")
    path = tmp_path_factory.mktemp("old") / "old_addon_model.h5"
    parity_weights.write_matterport_h5(path, layout, parity_weights.generate_arrays(layout))
    return path


def test_train_starts_from_a_cardless_matterport_file(run_module, dataset, matterport_file,
                                                      tmp_path):
    options = {**FAST, "backbone": "resnet50"}
    result = run_module(TRAIN, **{**options, "classes": "square,disk,pool", "name": "old",
                                  "training_dataset": dataset, "logs": tmp_path / "a",
                                  "epochs": 1, "model": matterport_file})
    assert result.returncode != 0
    message = " ".join(result.stderr.split())  # GRASS wraps long messages
    assert "holds 2 classes" in message and "names 3" in message and "-e" in message
    result = run_module(TRAIN, "-e", **{**options, "classes": "square,disk,pool",
                                        "name": "old", "training_dataset": dataset,
                                        "logs": tmp_path / "b", "epochs": 1,
                                        "model": matterport_file})
    assert result.returncode == 0, result.stderr
    card = json.loads((tmp_path / "b" / "mask_rcnn_old_0001.json").read_text())
    assert card["config"]["backbone"] == "resnet50" and card["config"]["num_classes"] == 4


def run_files(logs):
    return sorted(path.name for path in logs.iterdir() if path.name.startswith("mask_rcnn_"))


def test_best_keep_patience_and_a_run_never_replaces_another(run_module, dataset, tmp_path):
    """-s keeps the best epoch by validation mask mAP as _best (ties: the earlier),
    keep=2 only the last two epochs, patience=1 stops one epoch after the best. A second
    run of the same name needs --overwrite, which removes the first run and its CSV."""
    logs = tmp_path / "logs"
    # a learning rate too small to change anything: every epoch scores the same
    first = train(run_module, "-s", training_dataset=dataset, logs=logs, epochs=4, keep=2,
                  patience=1, learning_rate=1e-12, seed=3)
    assert first.returncode == 0, first.stderr
    said = " ".join(first.stderr.split())
    assert "Stopped early at epoch 2: validation mask mAP has not improved for 1 epochs " \
        "since epoch 1" in said
    assert run_files(logs) == ["mask_rcnn_test.csv", "mask_rcnn_test_0001.h5",
                               "mask_rcnn_test_0001.json", "mask_rcnn_test_0002.h5",
                               "mask_rcnn_test_0002.json", "mask_rcnn_test_best.h5",
                               "mask_rcnn_test_best.json"]
    best = json.loads((logs / "mask_rcnn_test_best.json").read_text())
    assert best["epoch"] == 1 and len(history(logs)) == 2
    assert (logs / "mask_rcnn_test_best.h5").read_bytes() == \
        (logs / "mask_rcnn_test_0001.h5").read_bytes()
    before = {name: (logs / name).read_bytes() for name in run_files(logs)}

    second = train(run_module, training_dataset=dataset, logs=logs, epochs=1)
    assert second.returncode != 0
    message = " ".join(error_message(second.stderr).split())
    assert "already holds a run named <test> (mask_rcnn_test_0002.h5)" in message
    assert "--overwrite" in message
    assert {name: (logs / name).read_bytes() for name in run_files(logs)} == before

    third = train(run_module, "--overwrite", training_dataset=dataset, logs=logs, epochs=3,
                  keep=0)
    assert third.returncode == 0, third.stderr
    assert run_files(logs) == ["mask_rcnn_test.csv"] + [
        "mask_rcnn_test_{:04d}.{}".format(epoch, ext) for epoch in (1, 2, 3)
        for ext in ("h5", "json")]
    assert [row["epoch"] for row in history(logs)] == ["0", "1", "2"]  # a CSV of its own


def test_own_model_starts_a_new_run_for_other_classes_with_e(run_module, trained, dataset,
                                                              tmp_path):
    """Fine-tuning: one of our checkpoints (square, disk) with -e starts a new run for
    other classes (here the same names in another order: other class ids) at epoch 1, and keeps its way of normalizing (standardized bands:
    it was trained from scratch); without -e the classes must match."""
    logs, _ = trained
    start = logs / "mask_rcnn_test_0002.h5"
    refused = train(run_module, training_dataset=dataset, logs=tmp_path / "a", epochs=1,
                    classes="disk,square", model=start)
    assert refused.returncode != 0
    assert "use -e" in " ".join(error_message(refused.stderr).split())
    result = train(run_module, "-e", training_dataset=dataset, logs=tmp_path / "b", epochs=1,
                   classes="disk,square", name="tuned", model=start)
    assert result.returncode == 0, result.stderr
    assert "Epoch 1/1" in result.stderr
    card = json.loads((tmp_path / "b" / "mask_rcnn_tuned_0001.json").read_text())
    assert card["epoch"] == 1 and card["classes"] == ["disk", "square"]
    assert card["normalization"]["method"] == "mean and standard deviation"
    assert card["started_from_weights"] is True
