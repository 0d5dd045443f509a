"""Weights files in matterport's layout: round trip, coverage of every array of
mask_rcnn_coco.h5's layout, head exclusion, errors, extra bands, inspection.

The reference layout (maskrcnnlib/data/matterport_coco_r101_layout.json)
lists every layer of matterport's published file with its weight names and
shapes; files are written from it with h5py, independently of the code under
test.
"""
import re
import shutil
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from maskrcnnlib.errors import ModelFileError
from maskrcnnlib.model.backbone import build_resnet
from maskrcnnlib.model.fpn import build_fpn
from maskrcnnlib.model.heads import classifier_head, mask_head
from maskrcnnlib.model.rpn import apply_rpn, build_rpn_model
from maskrcnnlib.model.weights import (HEAD_LAYERS, inspect_h5, layer_weights,
                                 load_weights_h5, save_weights_h5)
from support.layouts import coco_layout

LAYOUT = coco_layout()


def build_network(architecture="resnet101", num_classes=81, bands=3,
                  fc_layers_size=1024):
    """Backbone + FPN + RPN + heads; the heads read symbolic pooled features."""
    image = keras.Input((None, None, bands), name="input_image")
    _, c2, c3, c4, c5 = build_resnet(image, architecture, False)
    pyramid = build_fpn(c2, c3, c4, c5, pyramid_size=256)
    rpn_outputs = apply_rpn(build_rpn_model(1, 3, 256), pyramid)
    pooled = keras.Input((None, 7, 7, 256), name="roi_align_classifier")
    pooled_mask = keras.Input((None, 14, 14, 256), name="roi_align_mask")
    heads = classifier_head(pooled, num_classes, False, fc_layers_size)
    masks = mask_head(pooled_mask, num_classes, False)
    return keras.Model([image, pooled, pooled_mask],
                       pyramid + rpn_outputs + list(heads) + [masks])


def small_network(bands=3, num_classes=3):
    return build_network("resnet18", num_classes, bands, fc_layers_size=32)


def write_layout(path, layers, rng=None):
    """Write a Keras-2 weights file with the given [(layer, [(name, shape)])].

    With rng, arrays hold random numbers; without, datasets stay unallocated
    (enough for inspect_h5, which only reads shapes).
    """
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n, _ in layers])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.1.6"
        for name, weights in layers:
            group = f.create_group(name)
            group.attrs["weight_names"] = np.array([w.encode() for w, _ in weights],
                                                   dtype="S")
            for wname, shape in weights:
                if rng is None:
                    group.create_dataset(wname, shape=tuple(shape), dtype="f4")
                else:
                    group.create_dataset(wname, data=rng.standard_normal(
                        tuple(shape), dtype=np.float32))
    return path


def file_arrays(path):
    """{(layer, weight name): array} of every weight in a file."""
    with h5py.File(path, "r") as f:
        return {(layer, w.decode()): f[layer][w.decode()][()]
                for layer in f.attrs["layer_names"].astype(str)
                for w in f[layer].attrs["weight_names"]}


def model_arrays(model):
    return {(layer.name, name): keras.ops.convert_to_numpy(v)
            for layer in model.layers for name, v in layer_weights(layer)}


@pytest.fixture(scope="module")
def coco_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("coco") / "mask_rcnn_coco_random.h5"
    return write_layout(path, LAYOUT["layers"], np.random.default_rng(81))


@pytest.fixture(scope="module")
def coco_model():
    return build_network("resnet101", 81)


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    model = small_network()
    rng = np.random.default_rng(5)
    for v in model.weights:
        v.assign(rng.uniform(0.5, 1.5, size=tuple(v.shape)).astype(np.float32))
    path = tmp_path_factory.mktemp("small") / "small.h5"
    save_weights_h5(model, path)
    return path, model_arrays(model)


def test_save_load_round_trip(small_file, tmp_path):
    path, saved = small_file
    model = small_network()
    report = load_weights_h5(model, path)
    loaded = model_arrays(model)
    assert loaded.keys() == saved.keys()
    for key in saved:
        np.testing.assert_array_equal(loaded[key], saved[key])
    assert not report.missing and not report.skipped and not report.initialized
    assert "rpn_model" in report.loaded and "mrcnn_mask_bn4" in report.loaded
    assert sorted(p.name for p in path.parent.iterdir()) == ["small.h5"]  # no temp file


def test_saved_file_layout(small_file):
    path, _ = small_file
    with h5py.File(path, "r") as f:
        assert f.attrs["backend"] == b"tensorflow"
        assert isinstance(f.attrs["keras_version"], bytes)
        names = list(f.attrs["layer_names"].astype(str))
        assert {"input_image", "conv1", "rpn_model", "mrcnn_mask"} <= set(names)
        assert list(f["conv1"].attrs["weight_names"]) == [b"conv1/kernel:0",
                                                          b"conv1/bias:0"]
        assert f["conv1"]["conv1"]["kernel:0"].shape == (7, 7, 3, 64)
        assert list(f["rpn_model"].attrs["weight_names"].astype(str)) == [
            "rpn_conv_shared/kernel:0", "rpn_conv_shared/bias:0",
            "rpn_class_raw/kernel:0", "rpn_class_raw/bias:0",
            "rpn_bbox_pred/kernel:0", "rpn_bbox_pred/bias:0"]
        assert "rpn_model/rpn_conv_shared/kernel:0" in f
        assert list(f["mrcnn_class_bn1"].attrs["weight_names"].astype(str)) == [
            "mrcnn_class_bn1/gamma:0", "mrcnn_class_bn1/beta:0",
            "mrcnn_class_bn1/moving_mean:0", "mrcnn_class_bn1/moving_variance:0"]
        assert len(f["fpn_p6"].attrs["weight_names"]) == 0


def test_every_coco_array_is_loaded(coco_file, coco_model, tmp_path):
    report = load_weights_h5(coco_model, coco_file)
    in_file = file_arrays(coco_file)
    in_model = model_arrays(coco_model)
    assert in_model.keys() == in_file.keys()
    for key, array in in_file.items():
        np.testing.assert_array_equal(in_model[key], array, err_msg=str(key))
    assert not (report.missing or report.unused or report.skipped or report.initialized)
    # What we save has matterport's groups, weight names and shapes.
    saved = tmp_path / "resaved.h5"
    save_weights_h5(coco_model, saved)
    with h5py.File(saved, "r") as f:
        ours = {name: [(w.decode(), list(f[name][w.decode()].shape))
                       for w in f[name].attrs["weight_names"]]
                for name in f.attrs["layer_names"].astype(str)}
    reference = {name: [(w, shape) for w, shape in weights]
                 for name, weights in LAYOUT["layers"] if weights}
    assert {n: w for n, w in ours.items() if w} == reference


def test_exclude_skips_exactly_the_heads(coco_file):
    model = build_network("resnet101", num_classes=3)
    with pytest.raises(ModelFileError) as info:
        load_weights_h5(model, coco_file)
    assert info.value.layer in HEAD_LAYERS and "(1024, 81)" in str(info.value)
    assert "number of classes" in str(info.value)
    before = model_arrays(model)
    report = load_weights_h5(model, coco_file, exclude=HEAD_LAYERS)
    assert sorted(report.skipped) == sorted(HEAD_LAYERS)
    after, in_file = model_arrays(model), file_arrays(coco_file)
    for key, value in after.items():
        if key[0] in HEAD_LAYERS:
            np.testing.assert_array_equal(value, before[key])
        else:
            np.testing.assert_array_equal(value, in_file[key], err_msg=str(key))


def edited_copy(source, target, edit):
    shutil.copy(source, target)
    with h5py.File(target, "r+") as f:
        edit(f)
    return target


def test_missing_layer(small_file, tmp_path):
    def drop(f):
        del f["fpn_p3"]
        f.attrs["layer_names"] = np.array(
            [n for n in f.attrs["layer_names"] if n != b"fpn_p3"])
    path = edited_copy(small_file[0], tmp_path / "missing.h5", drop)
    with pytest.raises(ModelFileError) as info:
        load_weights_h5(small_network(), path)
    assert info.value.layer == "fpn_p3" and "fpn_p3" in str(info.value)
    report = load_weights_h5(small_network(), path, strict=False)
    assert report.missing == ["fpn_p3"]


def test_misshapen_array(small_file, tmp_path):
    def reshape(f):
        group = f["res3a_branch2b"]
        del group["res3a_branch2b/kernel:0"]
        group.create_dataset("res3a_branch2b/kernel:0", shape=(3, 3, 64, 128), dtype="f4")
    path = edited_copy(small_file[0], tmp_path / "misshapen.h5", reshape)
    with pytest.raises(ModelFileError) as info:
        load_weights_h5(small_network(), path)
    message = str(info.value)
    assert info.value.layer == "res3a_branch2b"
    assert "(3, 3, 64, 128)" in message and "(3, 3, 128, 128)" in message


def test_missing_weight_in_group(small_file, tmp_path):
    def drop_bias(f):
        f["fpn_p2"].attrs["weight_names"] = np.array([b"fpn_p2/kernel:0"])
    path = edited_copy(small_file[0], tmp_path / "nobias.h5", drop_bias)
    with pytest.raises(ModelFileError) as info:
        load_weights_h5(small_network(), path)
    assert info.value.layer == "fpn_p2"


@pytest.mark.parametrize("kind", ["not_hdf5", "truncated", "absent", "no_layer_names"])
def test_unreadable_files(small_file, tmp_path, kind):
    path = tmp_path / "bad.h5"
    if kind == "not_hdf5":
        path.write_text("this is not a weights file\n")
    elif kind == "truncated":
        data = Path(small_file[0]).read_bytes()
        path.write_bytes(data[:len(data) // 2])
    elif kind == "no_layer_names":
        with h5py.File(path, "w") as f:
            f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(ModelFileError) as info:
        load_weights_h5(small_network(), path)
    assert info.value.path == str(path) and str(path) in str(info.value)
    with pytest.raises(ModelFileError):
        inspect_h5(path)


def test_keras2_renamed_weights_load(small_file, tmp_path):
    """Keras 2 appends _1 to weight names when a model is built twice."""
    def rename(f):
        for layer in ("conv1", "rpn_model"):
            group = f[layer]
            old = list(group.attrs["weight_names"].astype(str))
            new = [w.replace("/", "_1/", 1) for w in old]
            for o, n in zip(old, new):
                group.create_dataset(n, data=group[o][()])
                del group[o]
            group.attrs["weight_names"] = np.array([n.encode() for n in new])
    path = edited_copy(small_file[0], tmp_path / "renamed.h5", rename)
    model = small_network()
    load_weights_h5(model, path)
    loaded = model_arrays(model)
    for key, value in small_file[1].items():
        np.testing.assert_array_equal(loaded[key], value)


def test_three_band_file_into_four_band_model(small_file, tmp_path):
    path, saved = small_file
    rgb = saved[("conv1", "conv1/kernel:0")]
    model = small_network(bands=4)
    report = load_weights_h5(model, path)
    kernel = keras.ops.convert_to_numpy(model.get_layer("conv1").kernel)
    np.testing.assert_array_equal(kernel[:, :, :3, :], rgb)
    np.testing.assert_allclose(kernel[:, :, 3, :], rgb.mean(axis=2), rtol=1e-6)
    assert len(report.initialized) == 1 and report.initialized[0].startswith("conv1")
    assert "conv1" not in report.loaded and "bn_conv1" in report.loaded

    model = small_network(bands=4)
    own = keras.ops.convert_to_numpy(model.get_layer("conv1").kernel)
    load_weights_h5(model, path, extra_bands="model")
    kernel = keras.ops.convert_to_numpy(model.get_layer("conv1").kernel)
    np.testing.assert_array_equal(kernel[:, :, :3, :], rgb)
    np.testing.assert_array_equal(kernel[:, :, 3, :], own[:, :, 3, :])


def test_more_bands_in_file_than_model(tmp_path):
    path = tmp_path / "five.h5"
    save_weights_h5(small_network(bands=5), path)
    with pytest.raises(ModelFileError) as info:
        load_weights_h5(small_network(bands=4), path)
    assert info.value.layer == "conv1" and "5 bands" in str(info.value)


def test_inspect_matterport_layouts(tmp_path):
    info = inspect_h5(write_layout(tmp_path / "r101.h5", LAYOUT["layers"]))
    assert info["backbone"] == "resnet101"
    assert (info["num_classes"], info["bands"]) == (81, 3)
    assert (info["pyramid_size"], info["anchors_per_location"],
            info["fc_layers_size"]) == (256, 3, 1024)
    assert info["keras_version"] == "2.1.6"
    assert info["layer_names"] == [name for name, _ in LAYOUT["layers"]]
    # Dropping blocks res4g..res4w gives matterport's ResNet-50 layout.
    r50 = [(n, w) for n, w in LAYOUT["layers"]
           if not re.match(r"^(res4|bn4)[g-w]_", n)]
    assert inspect_h5(write_layout(tmp_path / "r50.h5", r50))["backbone"] == "resnet50"


def test_inspect_saved_small_model(small_file):
    info = inspect_h5(small_file[0])
    assert (info["backbone"], info["num_classes"], info["bands"]) == ("resnet18", 3, 3)
