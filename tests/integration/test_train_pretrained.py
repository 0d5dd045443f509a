"""model=coco and model=imagenet: training starts from published weights, fetched by the
real download code from a loopback HTTP server (MASKRCNN_WEIGHTS_URL, as a site mirror)
into a cache of the test's own (MASKRCNN_WEIGHTS_DIR).

The served files are stand-ins the tests make: for COCO, a file with the published
layout of mask_rcnn_coco.h5 (every layer and weight shape; values zero) at the
published size; for ImageNet, a ResNet-50 backbone file written the way the published
Keras 1 file is (weights named "<layer>_W:0", "<layer>_running_std:0"), whose MD5 the
test puts in place of the published one (in-process).
"""
import functools
import hashlib
import http.server
import json
import os
import re
import threading

import h5py
import numpy as np
import pytest

from conftest import ROOT
from support.grass_helpers import error_message
from test_train_module import CLASSES, FAST, write_dataset

TRAIN = str(ROOT / "i.ann.maskrcnn.train" / "i.ann.maskrcnn.train.py")
COCO_SIZE = 257557808


@pytest.fixture
def served(tmp_path):
    """(folder, base URL) of a loopback HTTP server over a folder; stopped after the test."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield folder, "http://127.0.0.1:{}".format(httpd.server_address[1])
    httpd.shutdown()
    httpd.server_close()


def write_layers(path, layers, name_of=lambda layer, weight: weight, values=None):
    """An .h5 in the Keras 2 layout; datasets left unwritten (zeros, no disk) unless
    values[(layer, weight)] gives them."""
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([name.encode() for name, _ in layers])
        for name, weights in layers:
            group = f.create_group(name)
            names = [name_of(name, weight) for weight, _ in weights]
            group.attrs["weight_names"] = np.array([n.encode() for n in names], dtype="S") \
                if names else np.zeros((0,), "S1")
            for new, (weight, shape) in zip(names, weights):
                data = (values or {}).get((name, weight))
                group.create_dataset(new, shape=tuple(shape), dtype="float32", data=data)


@pytest.mark.grass
def test_model_coco_is_downloaded_checked_and_trained_from(run_module, grass_session, served,
                                                           tmp_path):
    from maskrcnnlib import pretrained

    folder, url = served
    layers = json.load(open(pretrained.LAYOUT_FILE))["layers"]
    stand_in = folder / "mask_rcnn_coco.h5"
    write_layers(stand_in, layers)
    os.truncate(stand_in, COCO_SIZE)  # the published size (sparse: no disk)
    dataset = write_dataset(tmp_path / "dataset", count=2)
    env = dict(grass_session, MASKRCNN_WEIGHTS_URL=url + "/",
               MASKRCNN_WEIGHTS_DIR=str(tmp_path / "cache"))
    options = {**FAST, "backbone": "resnet101", "classes": CLASSES, "name": "coco",
               "training_dataset": dataset, "logs": tmp_path / "logs", "epochs": 1,
               "steps_per_epoch": 1, "model": "coco"}
    result = run_module(TRAIN, env=env, **options)
    assert result.returncode == 0, result.stderr
    said = " ".join(result.stderr.split())
    assert "Downloading {}/mask_rcnn_coco.h5 into {}".format(url, tmp_path / "cache") in said
    assert "COCO weights" in said and "trained anew for square,disk" in said
    assert os.path.getsize(tmp_path / "cache" / "mask_rcnn_coco.h5") == COCO_SIZE
    assert os.listdir(tmp_path / "cache") == ["mask_rcnn_coco.h5"]
    card = json.loads((tmp_path / "logs" / "mask_rcnn_coco_0001.json").read_text())
    assert card["config"]["backbone"] == "resnet101" and card["config"]["num_classes"] == 3

    # offline with an empty cache: the error names the address and where the file goes
    env["MASKRCNN_WEIGHTS_DIR"] = str(tmp_path / "empty")
    env["MASKRCNN_WEIGHTS_URL"] = "http://127.0.0.1:9/"
    result = run_module(TRAIN, env=env, **{**options, "logs": tmp_path / "logs2"})
    message = " ".join(error_message(result.stderr).split())
    assert result.returncode != 0
    assert "http://127.0.0.1:9/mask_rcnn_coco.h5" in message
    assert str(tmp_path / "empty" / "mask_rcnn_coco.h5") in message
    # a backbone that the file does not hold
    result = run_module(TRAIN, env=env, **{**options, "backbone": "resnet50",
                                           "logs": tmp_path / "logs3"})
    assert result.returncode != 0 and "add backbone=resnet101" in \
        " ".join(error_message(result.stderr).split())


def resnet50_backbone_layers():
    """[(layer, [(Keras 1 weight name, shape)])] of a ResNet-50 backbone as the published
    ImageNet file names them, from the backbone layers of the shipped COCO layout
    (ResNet-101: its stage 4 has blocks a..w where ResNet-50's has a..f)."""
    from maskrcnnlib import pretrained

    keras1 = {"kernel": "W", "bias": "b", "gamma": "gamma", "beta": "beta",
              "moving_mean": "running_mean", "moving_variance": "running_std"}
    layers = []
    for name, weights in json.load(open(pretrained.LAYOUT_FILE))["layers"]:
        block = re.match(r"(?:res|bn)([2-5])([a-z]+)_branch", name)
        if name in ("conv1", "bn_conv1") or (
                block and (block.group(1) != "4" or block.group(2) in "abcdef")):
            layers.append((name, [("{}_{}:0".format(name, keras1[weight.split("/")[-1][:-2]]),
                                   shape) for weight, shape in weights]))
    return layers


def test_model_imagenet_starts_the_backbone_from_the_file(tmp_path, monkeypatch, served):
    """The ImageNet file (Keras 1 names) is converted once and loaded into the ResNet-50
    backbone: after one step (all layers at a tenth of the rate, as from any weights)
    the backbone holds the file's values, its frozen batch-norm statistics exactly."""
    from maskrcnnlib import pretrained
    from maskrcnnlib.train_job import TrainJob, run_train_job
    from maskrcnnlib.model.weights import file_layout

    folder, url = served
    layers = resnet50_backbone_layers()
    assert len([l for l in layers if l[0].startswith("res")]) == 3 * 16 + 4
    rng = np.random.default_rng(3)
    values = {(name, weight): rng.normal(0, 0.05, shape).astype(np.float32)
              for name, weights in layers for weight, shape in weights}
    for (name, weight), array in values.items():  # variances must stay positive
        if weight.endswith("running_std:0"):
            array[...] = 1.0 + np.abs(array)
    source = folder / pretrained.PRETRAINED["imagenet"].file_name
    write_layers(source, layers, values=values)
    monkeypatch.setitem(pretrained.PRETRAINED, "imagenet", pretrained.PRETRAINED[
        "imagenet"]._replace(md5=hashlib.md5(source.read_bytes()).hexdigest()))
    monkeypatch.setenv("MASKRCNN_WEIGHTS_URL", url)
    monkeypatch.setenv("MASKRCNN_WEIGHTS_DIR", str(tmp_path / "cache"))
    said = []
    job = TrainJob(classes=CLASSES.split(","), logs=str(tmp_path / "logs"), name="inet",
                   dataset_dir=str(write_dataset(tmp_path / "dataset", count=2)),
                   initial_weights="imagenet", backbone="resnet50", epochs=1,
                   steps_per_epoch=1, validation_steps=1, images_min_dim=64,
                   images_max_dim=64, rois_per_image=16, seed=1)
    run_train_job(job, message=said.append)
    assert any("ImageNet weights for the ResNet-50 backbone" in line for line in said)
    assert any("feature pyramid, RPN and heads start from random" in line for line in said)
    assert sorted(os.listdir(tmp_path / "cache")) == sorted(
        [source.name, pretrained.IMAGENET_BACKBONE])
    checkpoint = tmp_path / "logs" / "mask_rcnn_inet_0001.h5"
    saved = file_layout(checkpoint)
    assert "fpn_c5p5" in saved and "mrcnn_mask" in saved
    with h5py.File(checkpoint, "r") as f:
        for name, layer in (("res3b_branch2a", "W"), ("bn4f_branch2c", "running_std"),
                            ("conv1", "b"), ("bn_conv1", "running_mean")):
            variable = {"W": "kernel", "b": "bias", "running_std": "moving_variance",
                        "running_mean": "moving_mean"}[layer]
            stored = [w for w, _ in saved[name] if w.endswith(variable + ":0")][0]
            expected = values[(name, "{}_{}:0".format(name, layer))]
            if variable.startswith("moving"):  # frozen batch norm: exactly the file's
                np.testing.assert_array_equal(f[name][stored][()], expected)
            else:  # one step of SGD at a tenth of 0.001 moved them by far less than 1e-5
                np.testing.assert_allclose(f[name][stored][()], expected, rtol=0, atol=1e-5)
