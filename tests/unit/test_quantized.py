"""precision="int8": the dense part quantized by ONNX Runtime keeps the mask AP of
float32 on a trained model; its exported and quantized models are cached by weights,
shape and calibration images, and made anew when the weights change (issue 20)."""
import os

import numpy as np
import pytest

from maskrcnnlib.model import quantized
from maskrcnnlib.model.training import cpu_flags
from support.models import small_config
from support.precision import mask_ap, unseen_scenes
from support.shapes import shapes_scene


# int8 runs only on CPUs with 8-bit dot-product instructions (model.quantized)
needs_vnni = pytest.mark.skipif(not quantized.has_vnni(cpu_flags()),
                                reason="int8 needs AVX512-VNNI, AVX-VNNI or AMX-INT8")
ZEN4 = {"avx2", "avx512f", "avx512_bf16", "avx512_vnni"}


@needs_vnni
def test_int8_inference_keeps_the_mask_ap_of_float32(shapes_model):
    """The trained shapes model on the 40 unseen scenes of the bfloat16 test (112
    objects), float32 (the compiled CPU path) against int8 calibrated on 8 other
    scenes: int8's mask AP50, AP75 and mAP at most 0.01 below float32's."""
    scenes = unseen_scenes()
    others = np.random.default_rng(123)
    calibration = [shapes_scene(others, class_colors=True)[0] for _ in range(8)]
    figures = {}
    figures["float32"], _ = mask_ap(shapes_model, "float32", scenes)
    figures["int8"], detector = mask_ap(shapes_model, "int8", scenes, calibration)
    assert not detector.compiled and detector.int8_origin is not None
    print(figures)
    assert figures["float32"]["AP50"] >= 0.9, figures  # a model worth comparing
    for key in ("AP50", "AP75", "mAP"):
        assert figures["int8"][key] >= figures["float32"][key] - 0.01, (key, figures)


def _files(folder):
    return sorted(name for name in os.listdir(folder) if name.endswith(".onnx"))


@needs_vnni
def test_int8_models_are_cached_and_follow_the_weights(tmp_path, monkeypatch):
    from maskrcnnlib.model.inference import Detector

    monkeypatch.setenv(quantized.VARIABLE, str(tmp_path))
    config = small_config()
    rng = np.random.default_rng(3)
    images = [shapes_scene(rng)[0] for _ in range(3)]

    first = Detector(config, precision="int8")
    assert first.int8_origin is None
    first.calibrate(images[:2])
    assert first.int8_origin == "made"
    names = _files(tmp_path)
    assert [n.split("-")[0] for n in names] == ["float", "int8"]
    before = first.raw([images[2]])[0]
    # a second process would find both files: same weights, shape and images
    second = Detector(config, precision="int8")
    second.set_weights(first.model.get_weights())
    second.calibrate(images[:2])
    assert second.int8_origin == "cached" and _files(tmp_path) == names
    for a, b in zip(before, second.raw([images[2]])[0]):
        np.testing.assert_array_equal(a, b)
    # other calibration images: quantized anew from the cached export
    second.calibrate(images[1:])
    assert second.int8_origin == "export cached" and len(_files(tmp_path)) == 3

    # weights set through the Detector: the next run exports them anew, with the
    # images last calibrated on
    weights = second.model.get_weights()
    kernel = second.model.get_layer("fpn_p2").get_weights()[0]
    position = next(i for i, w in enumerate(weights) if w.shape == kernel.shape
                    and np.array_equal(w, kernel))
    weights[position] = kernel * 3.0
    second.set_weights(weights)
    after = second.raw([images[2]])[0]
    assert second.int8_origin == "made" and len(_files(tmp_path)) == 5
    assert not np.allclose(after[0], before[0])


def test_weights_digest_sees_two_values_swapped():
    """The key of the cache: a swap of two values (which the old fingerprints of the
    transformed kernels missed) is another model."""
    import keras

    inputs = keras.Input((4, 4, 2))
    model = keras.Model(inputs, keras.layers.Conv2D(3, 3, name="c")(inputs))
    kernel, bias = model.get_weights()
    kernel = np.arange(kernel.size, dtype=np.float32).reshape(kernel.shape)
    model.set_weights([kernel, bias])
    digest = quantized.weights_digest(model, (4, 4, 2))
    swapped = kernel.copy().ravel()
    swapped[[0, 7]] = swapped[[7, 0]]
    model.set_weights([swapped.reshape(kernel.shape), bias])
    assert quantized.weights_digest(model, (4, 4, 2)) != digest
    model.set_weights([kernel, bias])
    assert quantized.weights_digest(model, (4, 4, 2)) == digest
    assert quantized.weights_digest(model, (8, 8, 2)) != digest


def test_cache_folder_and_pruning(tmp_path):
    assert quantized.cache_dir({quantized.VARIABLE: "0"}) is None
    assert quantized.cache_dir({quantized.VARIABLE: "/x/y"}) == "/x/y"
    assert quantized.cache_dir({"XDG_CACHE_HOME": "/c"}) == "/c/i.ann.maskrcnn/int8"
    for i in range(quantized.KEEP + 3):
        path = tmp_path / "int8-{}.onnx".format(i)
        path.write_bytes(b"x")
        os.utime(path, (1000 + i, 1000 + i))  # later i: newer
    (tmp_path / "float-a.onnx").write_bytes(b"x")
    quantized._prune(str(tmp_path), "int8-")
    kept = sorted(int(n[5:-5]) for n in os.listdir(tmp_path) if n.startswith("int8-"))
    assert kept == list(range(3, quantized.KEEP + 3))
    assert (tmp_path / "float-a.onnx").exists()


@pytest.mark.parametrize("flags, vnni, policy", [
    ({"avx2", "avx512f", "avx512_bf16", "avx512_vnni"}, True, "mixed_bfloat16"),
    ({"avx2", "avx_vnni"}, True, "float32"),
    ({"avx2", "fma"}, False, "float32"),
])
def test_int8_heads_and_instructions_by_cpu(flags, vnni, policy):
    from maskrcnnlib.model.inference import heads_policy

    assert quantized.has_vnni(flags) == vnni
    assert heads_policy(flags) == policy


def test_int8_detector_refusals(monkeypatch):
    from maskrcnnlib.model import inference
    from maskrcnnlib.model.inference import Detector

    monkeypatch.setattr(inference, "cpu_flags", lambda: {"avx2", "fma"})
    with pytest.raises(ValueError, match="int8 needs a CPU with 8-bit dot-product"):
        Detector(small_config(), precision="int8")
    monkeypatch.setattr(inference, "cpu_flags", lambda: ZEN4)

    with pytest.raises(ValueError, match="float32 only"):
        Detector(small_config(), precision="int8", compiled=True)
    with pytest.raises(ValueError, match="one device"):
        Detector(small_config(), precision="int8", devices=["/cpu:0", "/cpu:1"])
    config = small_config()
    config.resize_mode = "none"
    with pytest.raises(ValueError, match="resize_mode square"):
        Detector(config, precision="int8")
    with pytest.raises(ValueError, match="only an int8 Detector"):
        Detector(small_config(), compiled=False).calibrate([np.zeros((128, 128, 3))])
    detector = Detector(small_config(), precision="int8")
    with pytest.raises(ValueError, match="at least one image"):
        detector.calibrate([])


def test_missing_packages_are_named(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnx" else real(name, *a))
    assert quantized.missing_packages() == ["onnx"]
    monkeypatch.undo()
    assert quantized.missing_packages() == []


def test_onnx_dense_part_equals_keras():
    """The ONNX graph written from the dense part (model.onnxexport) gives the
    Keras model's outputs (float32 rounding), batch of 2, batch norms with
    statistics away from 0 and 1."""
    import onnxruntime

    from maskrcnnlib.model.maskrcnn import build_inference_model, split_inference_model
    from maskrcnnlib.model.onnxexport import dense_to_onnx

    import keras

    keras.utils.set_random_seed(5)
    config = small_config()
    model = build_inference_model(config)
    rng = np.random.default_rng(5)
    model.set_weights([
        (np.abs(w) + 0.5 if "variance" in v.path else w + rng.normal(0, 0.05, w.shape))
        .astype(np.float32) for w, v in zip(model.get_weights(), model.weights)])
    dense = split_inference_model(model)[0]
    session = onnxruntime.InferenceSession(
        dense_to_onnx(dense, (128, 128, 3)).SerializeToString(),
        providers=["CPUExecutionProvider"])
    images = rng.normal(0, 1, (2, 128, 128, 3)).astype(np.float32)
    expected = [np.asarray(v) for v in dense(images, training=False)]
    found = session.run(None, {"input_image": images})
    assert [v.shape for v in found] == [v.shape for v in expected]
    for a, b in zip(found[:-2] + found[-1:], expected[:-2] + expected[-1:]):  # maps and box deltas
        # these reach 1e3: float32 sums in another order differ by ~4e-6 of that
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5 * np.abs(b).max())
    # the RPN's probabilities: a logit of ~1e3 moved by 4e-3 moves its softmax by up
    # to 1e-3 (measured 5e-4, 7e-4 without ONNX Runtime's graph optimizations)
    np.testing.assert_allclose(found[-2], expected[-2], atol=2e-3)


def test_same_padding_as_tensorflow_pads():
    from maskrcnnlib.model.onnxexport import _same_pads

    # hand-worked: 7 cells, window 3, stride 2 -> 4 outputs need 9 cells: 1 + 1
    assert _same_pads(7, 3, 2) == (1, 1)
    assert _same_pads(8, 3, 2) == (0, 1)  # 4 outputs need 9 of 8: the extra at the end
    assert _same_pads(8, 1, 2) == (0, 0)
    assert _same_pads(16, 3, 1) == (1, 1)
    assert _same_pads(10, 7, 2) == (2, 3)  # 5 outputs need 15 cells


def test_layers_without_an_onnx_form_are_named():
    import keras

    from maskrcnnlib.model.onnxexport import dense_to_onnx

    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(
        4, 3, dilation_rate=2, padding="same", name="dilated")(inputs))
    with pytest.raises(ValueError, match="dilated"):
        dense_to_onnx(model, (8, 8, 3))
    model = keras.Model(inputs, keras.layers.Dropout(0.5, name="drop")(inputs))
    with pytest.raises(ValueError, match="drop \\(Dropout\\)"):
        dense_to_onnx(model, (8, 8, 3))
