"""Losses: hand-computed values, ~0 for perfect predictions, 0 when nothing takes part.

The five losses together are taken through losses.training_losses, the assembly the
trainer's train_step uses, from the training graph's outputs.
"""
import math

import numpy as np

from maskrcnnlib.model import losses


def smooth(d):
    d = np.abs(d)
    return np.where(d < 1, 0.5 * d ** 2, d - 0.5)


def test_rpn_class_loss_by_hand():
    match = np.array([[[1], [-1], [0]]], np.int32)
    logits = np.array([[[0, 0], [1, 0], [5, -5]]], np.float32)
    expected = (math.log(2) + math.log(1 + math.exp(-1))) / 2  # neutral anchor ignored
    np.testing.assert_allclose(float(losses.rpn_class_loss(match, logits)), expected, rtol=1e-6)


def test_rpn_bbox_loss_packs_targets_per_image():
    match = np.array([[0, 1, -1, 1], [1, 0, 0, 0]], np.int32)
    targets = np.zeros((2, 3, 4), np.float32)
    targets[0, 0] = [0.5, 0, 0, 0]   # first positive of image 0 (anchor 1)
    targets[0, 1] = [0, 0, 0, 2]     # second positive of image 0 (anchor 3)
    targets[1, 0] = [0, -3, 0, 0]    # first positive of image 1 (anchor 0)
    pred = np.zeros((2, 4, 4), np.float32)
    pred[0, 0] = 9  # not positive: ignored
    expected = (0.125 + 1.5 + 2.5) / 12  # 3 positives x 4 coordinates
    got = float(losses.rpn_bbox_loss(targets, match[..., None], pred))
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_mrcnn_class_loss_drops_inactive_predictions():
    rng = np.random.default_rng(8)
    target = np.array([[1, 0, 2, 1], [0, 0, 1, 2]], np.int32)
    logits = rng.normal(size=(2, 4, 3)).astype(np.float32)
    active = np.array([[1, 1, 0], [1, 1, 1]], np.float32)  # only image 0's row is used
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    ce = -np.take_along_axis(log_softmax, target[..., None], -1)[..., 0]
    weight = active[0][logits.argmax(-1)]
    expected = (ce * weight).sum() / weight.sum()
    got = float(losses.mrcnn_class_loss(target, logits, active))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_mrcnn_bbox_and_mask_losses_use_the_target_class():
    rng = np.random.default_rng(9)
    class_ids = np.array([[2, 0, 1]], np.int32)
    target_bbox = rng.normal(size=(1, 3, 4)).astype(np.float32)
    pred_bbox = rng.normal(size=(1, 3, 3, 4)).astype(np.float32)
    expected = np.mean(np.concatenate([smooth(target_bbox[0, 0] - pred_bbox[0, 0, 2]),
                                       smooth(target_bbox[0, 2] - pred_bbox[0, 2, 1])]))
    got = float(losses.mrcnn_bbox_loss(target_bbox, class_ids, pred_bbox))
    np.testing.assert_allclose(got, expected, rtol=1e-5)

    target_masks = (rng.uniform(size=(1, 3, 4, 4)) > 0.5).astype(np.float32)
    pred_masks = rng.uniform(0.01, 0.99, size=(1, 3, 4, 4, 3)).astype(np.float32)
    pred_masks[0, 0, :, :, 2] = 0.5  # class 2 of ROI 0: log(2) per pixel
    pred_masks[0, 2, :, :, 1] = np.where(target_masks[0, 2] > 0, 0.25, 0.75)  # log(4)
    expected = (math.log(2) + math.log(4)) / 2
    got = float(losses.mrcnn_mask_loss(target_masks, class_ids, pred_masks))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_perfect_predictions_give_about_zero_and_empty_sets_give_zero():
    match = np.array([[1, -1, 0, 1]], np.int32)
    logits = np.where(match[..., None] == 1, [[-20.0, 20.0]], [[20.0, -20.0]])
    rpn_targets = np.zeros((1, 4, 4), np.float32)
    rpn_targets[0, :2] = [[0.1, 0.2, 0.3, 0.4], [-0.1, 0, 0.5, 1]]
    rpn_bbox = np.zeros((1, 4, 4), np.float32)
    rpn_bbox[0, 0], rpn_bbox[0, 3] = rpn_targets[0, 0], rpn_targets[0, 1]
    class_ids = np.array([[1, 2, 0]], np.int32)
    class_logits = np.eye(3)[class_ids] * 40.0
    target_bbox = np.ones((1, 3, 4), np.float32)
    pred_bbox = np.ones((1, 3, 3, 4), np.float32)
    target_masks = np.zeros((1, 3, 2, 2), np.float32)
    target_masks[0, 0, 0] = 1
    pred_masks = np.repeat(target_masks[..., None], 3, axis=-1)
    result = losses.training_losses({
        "rpn_match": match, "rpn_bbox_targets": rpn_targets,
        "rpn_class_logits": logits.astype(np.float32), "rpn_bbox": rpn_bbox,
        "target_class_ids": class_ids, "target_bbox": target_bbox,
        "mrcnn_class_logits": class_logits.astype(np.float32), "mrcnn_bbox": pred_bbox,
        "active_class_ids": np.ones((1, 3), np.float32),
        "target_masks": target_masks, "mask_class_ids": class_ids, "mrcnn_mask": pred_masks})
    assert sorted(result) == ["mrcnn_bbox", "mrcnn_class", "mrcnn_mask", "rpn_bbox",
                              "rpn_class"]
    for name, value in result.items():
        assert 0 <= float(value) < 1e-5, name

    nothing = np.zeros((1, 4), np.int32)
    assert float(losses.rpn_class_loss(nothing, logits)) == 0.0
    assert float(losses.rpn_bbox_loss(rpn_targets, nothing, rpn_bbox)) == 0.0
    background = np.zeros((1, 3), np.int32)
    assert float(losses.mrcnn_bbox_loss(target_bbox, background, pred_bbox)) == 0.0
    assert float(losses.mrcnn_mask_loss(target_masks, background, pred_masks)) == 0.0
    assert float(losses.mrcnn_class_loss(class_ids, class_logits, np.zeros((1, 3)))) == 0.0


def test_the_mask_loss_reads_the_positive_rows_of_the_mask_branch():
    """The training graph runs the mask head on the positive ROIs only: their class ids
    come as mask_class_ids (rows unlike target_class_ids'), and the mask loss uses them."""
    target_masks = np.ones((1, 2, 2, 2), np.float32)
    pred_masks = np.full((1, 2, 2, 2, 3), 0.5, np.float32)
    pred_masks[0, 0, :, :, 2] = 0.25  # ROI 0, class 2: log(4) per pixel
    outputs = {
        "rpn_match": np.zeros((1, 4), np.int32), "rpn_bbox_targets": np.zeros((1, 4, 4)),
        "rpn_class_logits": np.zeros((1, 4, 2), np.float32), "rpn_bbox": np.zeros((1, 4, 4)),
        "target_class_ids": np.array([[1, 1, 0]], np.int32),
        "target_bbox": np.zeros((1, 3, 4), np.float32),
        "mrcnn_class_logits": np.zeros((1, 3, 3), np.float32),
        "mrcnn_bbox": np.zeros((1, 3, 3, 4), np.float32),
        "active_class_ids": np.ones((1, 3), np.float32),
        "target_masks": target_masks, "mask_class_ids": np.array([[2, 0]], np.int32),
        "mrcnn_mask": pred_masks}
    got = float(losses.training_losses(outputs)["mrcnn_mask"])
    np.testing.assert_allclose(got, math.log(4), rtol=1e-5)  # only ROI 0 is positive
