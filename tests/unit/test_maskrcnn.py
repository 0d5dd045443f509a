"""The composed network: matterport's weight layout, shapes, trimming and layer groups."""

import keras
import numpy as np

from maskrcnnlib.config import Config
from maskrcnnlib.model.inference import Detector
from maskrcnnlib.model.maskrcnn import ValidRows, build_inference_model
from maskrcnnlib.model.training import MaskRCNNTrainer, layer_group, set_trainable_stage
from maskrcnnlib.model.weights import layer_weights
from support.layouts import coco_layout


def tiny_config(**changes):
    values = dict(num_classes=3, backbone="resnet18", image_min_dim=64, image_max_dim=64,
                  rpn_anchor_scales=[8, 16, 32, 64, 128], post_nms_rois_inference=50,
                  post_nms_rois_training=50, pre_nms_limit=200, train_rois_per_image=16,
                  rpn_train_anchors_per_image=32, max_gt_instances=5,
                  fpn_classif_fc_layers_size=32, top_down_pyramid_size=32,
                  detection_min_confidence=0.0)
    values.update(changes)
    return Config(**values).validate()


def test_inference_model_has_the_layout_of_mask_rcnn_coco():
    """Every layer with weights, in order, with matterport's weight names and shapes."""
    reference = coco_layout()["layers"]
    expected = [(name, [(w, tuple(s)) for w, s in weights])
                for name, weights in reference if weights]
    config = Config(num_classes=81, backbone="resnet101", image_min_dim=128,
                    image_max_dim=128).validate()
    model = build_inference_model(config)
    ours = [(layer.name, [(n, tuple(v.shape)) for n, v in layer_weights(layer)])
            for layer in model.layers if layer_weights(layer)]
    assert ours == expected


def test_valid_rows_cuts_shared_padding_only():
    rows = np.zeros((2, 5, 6), "float32")
    rows[0, :2, :4] = 0.5
    rows[1, :3, :4] = 0.25  # image 1 has three rows, image 0 two
    rows[1, 1] = 0.0  # a zero row inside stays
    out = np.asarray(ValidRows(columns=4)(rows))
    assert out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, rows[:, :3, :4])


def test_detector_returns_instances_in_original_pixels():
    """A 40 x 64 image molds to 64 x 64 at scale 1 below 12 rows of padding, so the
    box of a detection in the image is, by hand, its box in the molded image
    (normalized x 63, + 1 on y2 and x2) moved up 12 rows; each mask lies in its box.
    A lost window shift puts the boxes 12 rows off, a wrong scale stretches them (the
    old `if count:` test passed with boxes at half their size)."""
    keras.utils.set_random_seed(0)  # random weights with detections along all 4 edges
    detector = Detector(tiny_config())
    image = np.random.default_rng(0).integers(0, 255, (40, 64, 3)).astype("uint8")
    result = detector.detect([image, image])
    outputs, molded, windows = detector.raw([image])
    assert molded.shape[1:3] == (64, 64) and tuple(windows[0]) == (12, 0, 52, 64)
    rows = outputs[0][0]
    rows = rows[:np.flatnonzero(rows[:, 4] == 0)[0]] if (rows[:, 4] == 0).any() else rows
    boxes = np.round(rows[:, :4] * 63 + [0, 0, 1, 1]) - [12, 0, 12, 0]
    has_area = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    expected, expected_rows = boxes[has_area], rows[has_area]
    assert len(result) == 2 and len(expected) > 0
    for r in result:
        count = len(r["class_ids"])
        assert r["masks"].shape == (40, 64, count) and r["masks"].dtype == bool
        assert r["rois"].shape == (count, 4) and r["scores"].shape == (count,)
        np.testing.assert_allclose(r["rois"], expected, atol=1)  # .5 may round either way
        np.testing.assert_array_equal(r["class_ids"], expected_rows[:, 4])
        np.testing.assert_allclose(r["scores"], expected_rows[:, 5])
        assert set(r["class_ids"].tolist()) <= {1, 2}
        assert r["rois"][:, :2].min() >= 0
        assert r["rois"][:, 2].max() <= 40 and r["rois"][:, 3].max() <= 64
        for (y1, x1, y2, x2), mask in zip(r["rois"], np.moveaxis(r["masks"], -1, 0)):
            outside = mask.copy()
            outside[y1:y2, x1:x2] = False
            assert not outside.any()
    np.testing.assert_array_equal(result[0]["rois"], result[1]["rois"])


def test_compiled_detector_equals_the_plain_graph(monkeypatch):
    """The CPU path (dense part under XLA, Winograd 3x3 convs) gives the plain graph's
    outputs, every intermediate one in the model's order, up to float32 rounding."""
    from maskrcnnlib.model import winograd

    used = []
    original = winograd.winograd_conv3x3
    monkeypatch.setattr(winograd, "winograd_conv3x3",
                        lambda x, k, **kw: used.append(tuple(x.shape[1:3])) or original(x, k, **kw))
    keras.utils.set_random_seed(2)  # random weights, the same in every run
    config = tiny_config(image_min_dim=256, image_max_dim=256, detection_min_confidence=0.5)
    plain = Detector(config, intermediate=True, compiled=False)
    compiled = Detector(config, intermediate=True, compiled=True)
    compiled.set_weights(plain.model.get_weights())
    image = np.random.default_rng(2).integers(0, 255, (256, 256, 3)).astype("uint8")
    expected, _, _ = plain.raw([image])
    ours, _, _ = compiled.raw([image])
    assert not plain.compiled and compiled.compiled
    # backbone (resnet18: 64x64 in stage 2, 32x32 in stage 3, 16x16 in stage 4), FPN
    # and RPN; 16x16 only with the kernels transformed beforehand; P5 (8x8) direct
    assert {(64, 64), (32, 32), (16, 16)} <= set(used) and (8, 8) not in used
    assert used.count((64, 64)) >= 4  # stage 2's convs, not only the FPN's and RPN's
    assert [o.shape for o in ours] == [o.shape for o in expected]
    # P2..P6, rpn_class_logits, rpn_bbox: the dense part's outputs
    for got, want in zip(ours[5:], expected[5:]):
        np.testing.assert_allclose(got, want, atol=1e-4 * max(1.0, np.abs(want).max()))
    # Detections: rounding may reorder near-equal scores (these random heads saturate
    # near 1) or swap which of two near-equal boxes NMS keeps, so each detection of
    # the compiled graph is matched to one of the plain graph's: same class, box
    # within a pixel, score within 1e-3.
    results = [d.detect([image])[0] for d in (plain, compiled)]
    assert len(results[1]["class_ids"]) > 0
    assert abs(len(results[0]["class_ids"]) - len(results[1]["class_ids"])) <= 1
    want, got = results
    unmatched, pairs = list(range(len(want["class_ids"]))), []
    for i, (box, class_id, score) in enumerate(zip(got["rois"], got["class_ids"],
                                                   got["scores"])):
        for j in unmatched:
            if (want["class_ids"][j] == class_id and np.abs(want["rois"][j] - box).max() <= 1
                    and abs(want["scores"][j] - score) <= 1e-3):
                unmatched.remove(j)
                pairs.append((i, j))
                break
    assert len(unmatched) <= max(1, len(want["class_ids"]) // 20)
    mine, theirs = zip(*pairs)
    assert np.mean(got["masks"][..., list(mine)] != want["masks"][..., list(theirs)]) < 1e-3


def test_compiled_detector_follows_weights_set_after_its_first_call(tmp_path):
    """Its transformed kernels are made anew whenever weights are set through the
    Detector (set_weights, load_weights, copy_weights_from): its dense part's outputs
    (P2..P6 and the RPN's) then equal the plain graph's with the new weights."""
    keras.utils.set_random_seed(5)
    config = tiny_config(image_min_dim=128, image_max_dim=128)
    compiled = Detector(config, intermediate=True, compiled=True)
    plain = Detector(config, intermediate=True, compiled=False)  # other random weights
    image = np.random.default_rng(1).integers(0, 255, (128, 128, 3)).astype("uint8")

    def assert_dense_outputs_equal():
        ours, _, _ = compiled.raw([image])
        expected, _, _ = plain.raw([image])
        for got, want in zip(ours[5:], expected[5:]):
            np.testing.assert_allclose(got, want, atol=1e-4 * max(1.0, np.abs(want).max()))
        return ours

    first, _, _ = compiled.raw([image])
    assert compiled.added_bytes > 0 and plain.added_bytes == 0
    compiled.set_weights(plain.model.get_weights())
    again = assert_dense_outputs_equal()
    assert not np.allclose(first[5], again[5])  # the new weights did change P2
    # a file: doubling one kernel changes P2 again
    kernel = plain.model.get_layer("fpn_p2").kernel
    kernel.assign(kernel * 2.0)
    plain.save_weights(str(tmp_path / "doubled.h5"))
    compiled.load_weights(str(tmp_path / "doubled.h5"))
    assert_dense_outputs_equal()
    # another model's layers by name (as training hands its weights over)
    other = Detector(config, intermediate=True, compiled=False)
    compiled.copy_weights_from(other.model)
    plain.copy_weights_from(other.model)
    assert_dense_outputs_equal()


def test_a_short_last_batch_is_not_compiled_anew():
    """A compiled detector fills a batch shorter than its largest so far with copies
    (the shape stays the one compiled); the copies' results are cut off."""
    detector = Detector(tiny_config(), compiled=True)
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 255, (64, 64, 3)).astype("uint8") for _ in range(3)]
    full = detector.detect(images)
    short = detector.detect(images[:1])
    assert len(short) == 1 and detector._run.experimental_get_tracing_count() == 1
    np.testing.assert_array_equal(short[0]["rois"], full[0]["rois"])
    np.testing.assert_array_equal(short[0]["masks"], full[0]["masks"])
    outputs, _, _ = detector.raw(images[:2])
    assert [len(o) for o in outputs] == [2] * len(outputs)


def test_any_band_count():
    detector = Detector(tiny_config(bands=4))
    image = np.random.default_rng(1).integers(0, 255, (64, 64, 4)).astype("uint8")
    assert detector.detect([image])[0]["masks"].shape[:2] == (64, 64)


def test_layer_groups_follow_matterport_names():
    assert layer_group("conv1") == "stage1"
    assert layer_group("bn_conv1") == "stage1"
    assert layer_group("res4b22_branch2a") == "stage4"
    assert layer_group("bn5c_branch2c") == "stage5"
    assert layer_group("fpn_c5p5") == "fpn"
    assert layer_group("rpn_model") == "rpn"
    assert layer_group("mrcnn_mask_deconv") == "heads"
    assert layer_group("roi_align_mask") is None


def test_training_stages_select_layer_groups():
    trainer = MaskRCNNTrainer(tiny_config(), seed=0)
    set_trainable_stage(trainer, "heads")
    trainable = {layer.name for layer in trainer.layers if layer.trainable and layer.weights}
    assert "mrcnn_class_logits" in trainable and "rpn_model" in trainable
    assert "fpn_p2" in trainable and not {"conv1", "res4a_branch2a"} & trainable
    set_trainable_stage(trainer, "4+")
    trainable = {layer.name for layer in trainer.layers if layer.trainable and layer.weights}
    assert {"res4a_branch2a", "res5a_branch2a", "mrcnn_mask"} <= trainable
    assert "res3a_branch2a" not in trainable
    set_trainable_stage(trainer, "all")
    assert all(layer.trainable for layer in trainer.layers if layer.weights)
