"""When detection compiles its network (maskrcnnlib.detect): the work of a run in tiles
of 512 x 512, and the threshold from the environment. Hand-worked values."""
import pytest

from maskrcnnlib.config import Config
from maskrcnnlib.detect import COMPILE_FROM_TILES, compile_threshold, tile_work
from maskrcnnlib.errors import DetectionError


def square(side):
    config = Config(name="t", num_classes=2)
    config.resize_mode, config.image_min_dim, config.image_max_dim = "square", side, side
    return config


def test_work_counts_tiles_of_512_and_flips_three_times():
    assert tile_work(square(512), 10, flips=False) == 10
    assert tile_work(square(256), 16, flips=False) == 4  # a quarter of the pixels each
    assert tile_work(square(1024), 3, flips=False) == 12
    assert tile_work(square(512), 10, flips=True) == 30  # each tile and its two flips


def test_work_counts_in_proportion_to_the_pyramids_channels():
    small = square(512)
    small.top_down_pyramid_size = 64  # gains a quarter of what 256 channels gain per tile
    assert tile_work(small, 40, flips=False) == 10
    assert tile_work(small, 40, flips=True) == 30
    small.image_min_dim = small.image_max_dim = 1024
    assert tile_work(small, 10, flips=False) == 10


def test_threshold_from_the_environment():
    assert compile_threshold({}) == COMPILE_FROM_TILES == 40
    assert compile_threshold({"MASKRCNN_COMPILE_FROM_TILES": " "}) == 40
    assert compile_threshold({"MASKRCNN_COMPILE_FROM_TILES": "0"}) == 0
    assert compile_threshold({"MASKRCNN_COMPILE_FROM_TILES": "12.5"}) == 12.5
    for bad in ("-3", "nan", "many"):
        with pytest.raises(DetectionError, match="MASKRCNN_COMPILE_FROM_TILES must be"):
            compile_threshold({"MASKRCNN_COMPILE_FROM_TILES": bad})
