"""Test-time flips (maskrcnnlib.flips): box flipping, box IoU and mask averaging, checked
against hand-worked values and brute-force cell counts."""
import numpy as np
import pytest

from maskrcnnlib.flips import average_masks, box_ious, flip_boxes


def test_flip_boxes_by_hand_and_back():
    box = [(2, 3, 5, 9)]
    # columns 3..8 of a 10-column image are columns 1..6 once flipped west-east
    assert flip_boxes(box, 1, 10).tolist() == [[2, 1, 5, 7]]
    # rows 2..4 of an 8-row image are rows 3..5 once flipped north-south
    assert flip_boxes(box, 0, 8).tolist() == [[3, 3, 6, 9]]
    for axis, size in ((0, 8), (1, 10)):
        assert flip_boxes(flip_boxes(box, axis, size), axis, size).tolist() == [list(box[0])]


def test_flipped_box_covers_the_flipped_cells():
    image = np.zeros((8, 10), bool)
    image[2:5, 3:9] = True
    for axis in (0, 1):
        flipped = np.flip(image, axis)
        rows, cols = np.nonzero(flipped)
        y1, x1, y2, x2 = flip_boxes([(2, 3, 5, 9)], axis, image.shape[axis])[0]
        assert (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1) == (y1, x1, y2, x2)


def test_box_ious_against_cell_counts():
    rng = np.random.default_rng(3)
    boxes = []
    for _ in range(6):
        y1, x1 = rng.integers(0, 12, 2)
        boxes.append((y1, x1, y1 + rng.integers(1, 8), x1 + rng.integers(1, 8)))
    ious = box_ious(boxes[:3], boxes[3:])
    for i, a in enumerate(boxes[:3]):
        for j, b in enumerate(boxes[3:]):
            cells_a = np.zeros((20, 20), bool)
            cells_b = np.zeros((20, 20), bool)
            cells_a[a[0]:a[2], a[1]:a[3]] = True
            cells_b[b[0]:b[2], b[1]:b[3]] = True
            expected = (cells_a & cells_b).sum() / (cells_a | cells_b).sum()
            assert ious[i, j] == pytest.approx(expected)


def kept_one():
    """One detection, box rows 0..3, cols 0..3, probability 0.4 but 0.9 at (0, 0)."""
    crop = np.full((4, 4), 0.4, np.float32)
    crop[0, 0] = 0.9
    return (np.array([[0, 0, 4, 4]]), np.array([1]), [crop])


def test_alone_the_mask_is_the_thresholded_probability():
    masks = average_masks(kept_one(), [], (6, 6))
    expected = np.zeros((6, 6), bool)
    expected[0, 0] = True
    assert masks.shape == (6, 6, 1) and np.array_equal(masks[:, :, 0], expected)


def test_a_match_is_averaged_in_and_may_reach_beyond_the_box():
    # box rows 0..3, cols 0..4: IoU 16 / 20 = 0.8 with the kept box; 0.7 inside, 1.0 in col 4
    crop = np.full((4, 5), 0.7, np.float32)
    crop[:, 4] = 1.0
    other = (np.array([[0, 0, 4, 5]]), np.array([1]), [crop])
    masks = average_masks(kept_one(), [other], (6, 6))[:, :, 0]
    expected = np.zeros((6, 6), bool)
    expected[0:4, 0:4] = True  # (0.4 + 0.7) / 2 = 0.55
    expected[0:4, 4] = True  # (0 + 1.0) / 2 = 0.5
    assert np.array_equal(masks, expected)


def test_other_classes_and_small_overlaps_do_not_count():
    crop = np.full((4, 4), 1.0, np.float32)
    other_class = (np.array([[0, 0, 4, 4]]), np.array([2]), [crop])
    # rows 1..4, cols 1..4: IoU 9 / 23 < 0.5
    shifted = (np.array([[1, 1, 5, 5]]), np.array([1]), [crop])
    masks = average_masks(kept_one(), [other_class, shifted], (6, 6))
    assert masks[:, :, 0].sum() == 1 and masks[0, 0, 0]


def test_the_best_overlapping_match_of_each_flip_counts_once():
    # two candidates of the same class: only the one of highest box IoU is averaged in
    low = np.zeros((4, 4), np.float32)
    high = np.ones((4, 5), np.float32)
    other = (np.array([[0, 0, 4, 5], [0, 0, 4, 4]]), np.array([1, 1]), [high, low])
    masks = average_masks(kept_one(), [other], (6, 6))[:, :, 0]
    # the exact box (IoU 1) wins: (0.4 + 0) / 2 < 0.5 everywhere but (0, 0): 0.45 < 0.5
    assert not masks.any()
