"""Model cards, and card-less matterport files read for what they hold."""
import sys
from pathlib import Path

import pytest

from maskrcnnlib.config import Config
from maskrcnnlib.errors import ConfigError, ModelFileError
from maskrcnnlib.modelcard import card_path, config_for_weights, read_card, write_card

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
sys.path.insert(0, str(FIXTURES))
import parity_weights  # noqa: E402


@pytest.fixture(scope="module")
def cardless_r50(tmp_path_factory):
    """A matterport-layout ResNet-50 file with 2 classes + background, no card."""
    layout = parity_weights.read_layout(FIXTURES / "matterport" / "layout.json")
    path = tmp_path_factory.mktemp("cardless") / "old_model.h5"
    parity_weights.write_matterport_h5(path, layout, parity_weights.generate_arrays(layout))
    return path


def test_cardless_file_gives_the_2018_detect_settings(cardless_r50):
    config = config_for_weights(cardless_r50, classes=["building", "pool"])
    assert (config.backbone, config.num_classes, config.bands) == ("resnet50", 3, 3)
    assert config.class_names == ["building", "pool"]
    assert (config.image_min_dim, config.image_max_dim, config.resize_mode) == (768, 768,
                                                                               "square")
    assert config.pixel_mean == [123.7, 116.8, 103.9]
    assert list(config.rpn_anchor_scales) == [32, 64, 128, 256, 512]
    assert config.detection_min_confidence == 0.7


def test_cardless_file_needs_fitting_classes(cardless_r50):
    with pytest.raises(ConfigError, match="3 classes.*2 classes"):
        config_for_weights(cardless_r50, classes=["a", "b", "c"])
    with pytest.raises(ConfigError, match="no model card.*2 classes"):
        config_for_weights(cardless_r50)


def test_card_round_trip_and_renaming(tmp_path):
    config = Config(num_classes=3, class_names=["tree", "house"], backbone="resnet18",
                    bands=4, image_min_dim=256, image_max_dim=256,
                    pixel_mean=[1.0, 2.0, 3.0, 4.0], pixel_std=[5.0, 6.0, 7.0, 8.0]).validate()
    weights = tmp_path / "mask_rcnn_x_0001.h5"
    path = write_card(weights, config, {"epoch": 1})
    assert path == card_path(weights) == str(tmp_path / "mask_rcnn_x_0001.json")
    assert read_card(weights)["epoch"] == 1
    assert config_for_weights(weights) == config
    assert config_for_weights(weights, ["a", "b"]).class_names == ["a", "b"]
    with pytest.raises(ConfigError, match="1 classes"):
        config_for_weights(weights, ["a"])


def test_not_a_card(tmp_path):
    weights = tmp_path / "m.h5"
    (tmp_path / "m.json").write_text('{"something": 1}')
    with pytest.raises(ModelFileError, match="not an i.ann.maskrcnn model card"):
        read_card(weights)
