"""Config: defaults, derived values, validation and the JSON round trip."""

import json
import os

import pytest

from maskrcnnlib.config import Config
from maskrcnnlib.errors import ConfigError, MaskRCNNError


def test_defaults_follow_the_2018_addon_and_matterport():
    config = Config()
    # 2018 addon (ModelConfig and i.ann.maskrcnn.train option defaults)
    assert config.image_min_dim == 256
    assert config.image_max_dim == 1280
    assert config.train_rois_per_image == 64
    assert config.images_per_gpu == 1
    assert config.steps_per_epoch == 3000
    assert config.validation_steps == 100
    assert config.use_mini_mask is False
    assert config.train_bn is False
    # matterport
    assert config.rpn_anchor_scales == [32, 64, 128, 256, 512]
    assert config.rpn_anchor_ratios == [0.5, 1, 2]
    assert config.backbone_strides == [4, 8, 16, 32, 64]
    assert config.pixel_mean == [123.7, 116.8, 103.9]
    assert config.pixel_std == [1.0, 1.0, 1.0]
    assert config.mask_shape == [28, 28] and config.mini_mask_shape == [56, 56]
    assert config.bbox_std_dev == [0.1, 0.1, 0.2, 0.2]
    assert config.detection_min_confidence == 0.7
    assert config.learning_rate == 0.001 and config.gradient_clip_norm == 5.0
    assert set(config.loss_weights) == {
        "rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss",
        "mrcnn_mask_loss",
    }
    assert config.validate() is config


def test_derived_values():
    config = Config(images_per_gpu=2, gpu_count=3, num_classes=5, image_max_dim=512, bands=4)
    assert config.batch_size == 6
    assert config.image_shape == (512, 512, 4)
    assert config.image_meta_size == 1 + 3 + 3 + 4 + 1 + 5
    assert config.anchors_per_location == 3


@pytest.mark.parametrize(
    "bands, mean",
    [(1, [123.7]), (3, [123.7, 116.8, 103.9]), (5, [123.7, 116.8, 103.9, 0.0, 0.0])],
)
def test_pixel_mean_default_per_band(bands, mean):
    config = Config(bands=bands)
    assert config.pixel_mean == mean
    assert config.pixel_std == [1.0] * bands
    config.validate()


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"image_max_dim": 1000}, "image_max_dim"),
        ({"image_min_dim": 1344}, "image_min_dim"),
        ({"num_classes": 1}, "num_classes"),
        ({"pixel_mean": [1.0, 2.0]}, "pixel_mean"),
        ({"pixel_std": [1.0, 0.0, 1.0]}, "pixel_std"),
        ({"backbone": "vgg16"}, "backbone"),
        ({"epochs": 0}, "epochs"),
        ({"steps_per_epoch": -5}, "steps_per_epoch"),
        ({"images_per_gpu": True}, "images_per_gpu"),
        ({"train_rois_per_image": 2.5}, "train_rois_per_image"),
        ({"resize_mode": "crop"}, "resize_mode"),
        ({"class_names": ["a", "b"], "num_classes": 2}, "class_names"),
        ({"class_names": ["a", "a"], "num_classes": 3}, "class_names"),
        ({"band_names": ["r", "g"]}, "band_names"),
        ({"rpn_anchor_scales": [32, 64]}, "rpn_anchor_scales"),
        ({"detection_min_confidence": 1.5}, "detection_min_confidence"),
        ({"rpn_nms_threshold": 0}, "rpn_nms_threshold"),
        ({"mask_shape": [32, 32]}, "mask_shape"),
        ({"use_mini_mask": True, "mini_mask_shape": [56]}, "mini_mask_shape"),
        ({"loss_weights": {"rpn_class_loss": 1.0}}, "loss_weights"),
        ({"train_bn": "yes"}, "train_bn"),
        ({"learning_rate": 0}, "learning_rate"),
    ],
)
def test_validate_names_the_bad_field(changes, field):
    with pytest.raises(ConfigError) as caught:
        Config(**changes).validate()
    assert caught.value.field == field
    assert field in str(caught.value)
    assert isinstance(caught.value, MaskRCNNError)


def test_valid_variants():
    Config(num_classes=3, class_names=["house", "road"]).validate()
    Config(resize_mode="none", train_bn=None, use_mini_mask=True).validate()
    Config(backbone="resnet18", bands=1, band_names=["dem"]).validate()


def test_from_dict_rejects_unknown_key():
    with pytest.raises(ConfigError) as caught:
        Config.from_dict({"name": "x", "imageMaxDim": 512})
    assert caught.value.field == "imageMaxDim"
    assert "imageMaxDim" in str(caught.value)


def test_from_dict_validates_and_fills_defaults():
    config = Config.from_dict({"num_classes": 3})
    assert config.num_classes == 3 and config.image_max_dim == 1280
    with pytest.raises(ConfigError):
        Config.from_dict({"image_max_dim": 100})


def test_json_round_trip_is_exact(tmp_path):
    config = Config(
        name="buildings", num_classes=3, class_names=["house", "shed"], bands=4,
        band_names=["r", "g", "b", "nir"], pixel_mean=[0.1, 1 / 3, 1e-7, 2.0],
        pixel_std=[1.5, 2.0, 3.0, 0.7], rpn_anchor_scales=(16, 32, 64, 128, 256),
        train_bn=None, use_mini_mask=True, mini_mask_shape=(40, 48),
        learning_rate=0.0003,
    )
    path = tmp_path / "config.json"
    config.to_json(str(path))
    again = Config.from_json(str(path))
    assert again == config
    assert again.to_dict() == config.to_dict()
    assert json.loads(path.read_text())["class_names"] == ["house", "shed"]
    assert os.listdir(tmp_path) == ["config.json"]  # no temporary file left


def test_to_json_replaces_existing_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("old")
    Config(name="new").to_json(str(path))
    assert Config.from_json(str(path)).name == "new"


def test_from_json_errors(tmp_path):
    with pytest.raises(ConfigError, match="missing.json"):
        Config.from_json(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json"):
        Config.from_json(str(bad))


def test_to_dict_is_a_copy():
    config = Config()
    values = config.to_dict()
    values["rpn_anchor_ratios"].append(4)
    values["loss_weights"]["rpn_class_loss"] = 0.0
    assert config.rpn_anchor_ratios == [0.5, 1, 2]
    assert config.loss_weights["rpn_class_loss"] == 1.0
