"""Every hyperparameter of i.ann.maskrcnn in one dataclass.

Defaults are matterport Mask_RCNN's `Config`, overridden where the 2018
i.ann.maskrcnn addon overrode them (its `ModelConfig` and the option
defaults of its i.ann.maskrcnn.train module):

    field                 matterport   2018 addon (used here)
    images_per_gpu        2            1
    steps_per_epoch       1000         3000 (module option)
    validation_steps      50           100
    epochs                -            200 (module option)
    image_min_dim         800          256 (module option; ModelConfig: 768)
    image_max_dim         1024         1280 (module option; ModelConfig: 768)
    train_rois_per_image  200          64
    use_mini_mask         True         False (mini_mask_size empty by default)

Images are H x W x bands arrays; shapes below are (height, width, bands).
This module imports nothing heavier than the standard library.
"""

import copy
import dataclasses
import json
import numbers
import os
import tempfile
from dataclasses import dataclass, field
from typing import Optional

from maskrcnnlib.errors import ConfigError

BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101")
RESIZE_MODES = ("square", "none", "pad64")
PRECISIONS = ("auto", "float32", "mixed")
LOSS_NAMES = (
    "rpn_class_loss",
    "rpn_bbox_loss",
    "mrcnn_class_loss",
    "mrcnn_bbox_loss",
    "mrcnn_mask_loss",
)
# matterport's MEAN_PIXEL (RGB of ImageNet); extra bands default to 0
MATTERPORT_MEAN_PIXEL = (123.7, 116.8, 103.9)


def default_pixel_mean(bands):
    """Per-band mean for `bands` bands: matterport's RGB mean, then zeros."""
    return [float(v) for v in MATTERPORT_MEAN_PIXEL[:bands]] + [0.0] * max(
        0, bands - len(MATTERPORT_MEAN_PIXEL)
    )


def _default_loss_weights():
    return {name: 1.0 for name in LOSS_NAMES}


@dataclass
class Config:
    """Hyperparameters of one Mask R-CNN model (training and detection).

    Box coordinates everywhere are image pixels (y1, x1, y2, x2) with y down
    the rows; molded pixel values are (value - pixel_mean) / pixel_std.
    Construct, adjust fields, then call `validate()`; `from_dict` and
    `from_json` validate for you.
    """

    # --- what is detected
    name: str = "model"
    num_classes: int = 2  # including the background class 0
    class_names: list = field(default_factory=list)  # without background
    # --- input
    backbone: str = "resnet101"
    bands: int = 3
    band_names: list = field(default_factory=list)
    pixel_mean: Optional[list] = None  # None -> default_pixel_mean(bands)
    pixel_std: Optional[list] = None  # None -> 1.0 per band
    # --- training schedule
    images_per_gpu: int = 1  # per replica (GPU, or the CPU)
    gpu_count: int = 1  # GPUs per machine; 0: the CPU
    accumulation_steps: int = 1  # steps whose gradients are averaged per update
    # "auto": bfloat16 on CPUs with native bfloat16 (AVX512_BF16, AMX), else float32;
    # "mixed": float16 on GPUs, bfloat16 on CPUs; "float32" (model.training.compute_precision)
    precision: str = "auto"
    epochs: int = 200
    steps_per_epoch: int = 3000
    validation_steps: int = 100
    learning_rate: float = 0.001
    learning_momentum: float = 0.9
    weight_decay: float = 0.0001
    gradient_clip_norm: float = 5.0
    # --- resizing (matterport's IMAGE_RESIZE_MODE & co.)
    image_min_dim: int = 256
    image_max_dim: int = 1280
    image_min_scale: float = 0.0
    resize_mode: str = "square"
    # --- backbone / FPN
    backbone_strides: list = field(default_factory=lambda: [4, 8, 16, 32, 64])
    fpn_classif_fc_layers_size: int = 1024
    top_down_pyramid_size: int = 256
    # --- RPN
    rpn_anchor_scales: list = field(default_factory=lambda: [32, 64, 128, 256, 512])
    rpn_anchor_ratios: list = field(default_factory=lambda: [0.5, 1, 2])
    rpn_anchor_stride: int = 1
    rpn_nms_threshold: float = 0.7
    rpn_train_anchors_per_image: int = 256
    pre_nms_limit: int = 6000
    post_nms_rois_training: int = 2000
    post_nms_rois_inference: int = 1000
    # --- masks and heads
    use_mini_mask: bool = False
    mini_mask_shape: list = field(default_factory=lambda: [56, 56])  # (h, w)
    train_rois_per_image: int = 64
    roi_positive_ratio: float = 0.33
    pool_size: int = 7
    mask_pool_size: int = 14
    mask_shape: list = field(default_factory=lambda: [28, 28])
    max_gt_instances: int = 100
    rpn_bbox_std_dev: list = field(default_factory=lambda: [0.1, 0.1, 0.2, 0.2])
    bbox_std_dev: list = field(default_factory=lambda: [0.1, 0.1, 0.2, 0.2])
    # --- detection
    detection_max_instances: int = 100
    detection_min_confidence: float = 0.7
    detection_nms_threshold: float = 0.3
    # None: BN trains normally; False: frozen; True: training mode always
    train_bn: Optional[bool] = False
    loss_weights: dict = field(default_factory=_default_loss_weights)

    def __post_init__(self):
        # JSON has no tuples: store every sequence as a list so that a
        # round trip through to_dict/from_dict gives an equal object.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                setattr(self, f.name, list(value))
        if self.pixel_mean is None and _is_int(self.bands) and self.bands > 0:
            self.pixel_mean = default_pixel_mean(self.bands)
        if self.pixel_std is None and _is_int(self.bands) and self.bands > 0:
            self.pixel_std = [1.0] * self.bands

    # ------------------------------------------------------------ derived
    @property
    def batch_size(self):
        """Images per training/detection step on one machine (the CPU counts as one)."""
        return self.images_per_gpu * max(1, self.gpu_count)

    @property
    def image_shape(self):
        """(height, width, bands) of the network input, as matterport's
        IMAGE_SHAPE: [max_dim, max_dim, bands]. Exact in "square" mode; in
        "none"/"pad64" modes the real size follows the images and this is
        nominal (training then needs images of exactly this size)."""
        return (self.image_max_dim, self.image_max_dim, self.bands)

    @property
    def image_meta_size(self):
        """Length of one image meta vector (see model.image_meta)."""
        return 1 + 3 + 3 + 4 + 1 + self.num_classes

    @property
    def anchors_per_location(self):
        """Anchors per feature-map cell: one per ratio (one scale per level)."""
        return len(self.rpn_anchor_ratios)

    # --------------------------------------------------------- validation
    def validate(self):
        """Check every field; raise ConfigError naming the first bad one.

        Returns self, so `Config(...).validate()` can be chained.
        """
        _check_str(self, "name")
        _check_int(self, "num_classes", 2)
        self._validate_classes()
        if self.backbone not in BACKBONES:
            raise ConfigError(
                "Unknown backbone '{}', expected one of {}".format(
                    self.backbone, ", ".join(BACKBONES)
                ),
                field="backbone",
            )
        self._validate_bands()
        for name in ("images_per_gpu", "accumulation_steps", "epochs", "steps_per_epoch"):
            _check_int(self, name, 1)
        _check_int(self, "gpu_count", 0)
        if self.precision not in PRECISIONS:
            raise ConfigError("Unknown precision '{}', expected one of {}".format(
                self.precision, ", ".join(PRECISIONS)), field="precision")
        _check_int(self, "validation_steps", 0)
        _check_real(self, "learning_rate", 0.0, inclusive=False)
        _check_real(self, "learning_momentum", 0.0, 1.0)
        _check_real(self, "weight_decay", 0.0)
        _check_real(self, "gradient_clip_norm", 0.0, inclusive=False)
        self._validate_resizing()
        self._validate_pyramid()
        for name in (
            "fpn_classif_fc_layers_size",
            "top_down_pyramid_size",
            "rpn_anchor_stride",
            "rpn_train_anchors_per_image",
            "pre_nms_limit",
            "post_nms_rois_training",
            "post_nms_rois_inference",
            "train_rois_per_image",
            "pool_size",
            "mask_pool_size",
            "max_gt_instances",
            "detection_max_instances",
        ):
            _check_int(self, name, 1)
        for name in ("rpn_nms_threshold", "roi_positive_ratio", "detection_nms_threshold"):
            _check_real(self, name, 0.0, 1.0, inclusive=False)
        _check_real(self, "detection_min_confidence", 0.0, 1.0)
        self._validate_masks()
        for name in ("rpn_bbox_std_dev", "bbox_std_dev"):
            _check_list(self, name, _is_real, 4, "4 positive numbers")
            if any(v <= 0 for v in getattr(self, name)):
                raise ConfigError("{} must be 4 positive numbers".format(name), field=name)
        if self.train_bn not in (None, True, False):
            raise ConfigError("train_bn must be true, false or null", field="train_bn")
        self._validate_loss_weights()
        return self

    def _validate_classes(self):
        _check_list(self, "class_names", lambda v: isinstance(v, str) and v, None,
                    "non-empty strings")
        names = self.class_names
        if names and len(names) != self.num_classes - 1:
            raise ConfigError(
                "class_names has {} names but num_classes is {} (background "
                "included, so {} names expected)".format(
                    len(names), self.num_classes, self.num_classes - 1
                ),
                field="class_names",
            )
        if len(set(names)) != len(names):
            raise ConfigError("class_names contains duplicate names", field="class_names")

    def _validate_bands(self):
        _check_int(self, "bands", 1)
        _check_list(self, "band_names", lambda v: isinstance(v, str) and v, None,
                    "non-empty strings")
        if self.band_names and len(self.band_names) != self.bands:
            raise ConfigError(
                "band_names has {} names for {} bands".format(len(self.band_names), self.bands),
                field="band_names",
            )
        _check_list(self, "pixel_mean", _is_real, self.bands, "one number per band")
        _check_list(self, "pixel_std", _is_real, self.bands, "one number per band")
        if any(v <= 0 for v in self.pixel_std):
            raise ConfigError("pixel_std values must be positive", field="pixel_std")

    def _validate_resizing(self):
        if self.resize_mode not in RESIZE_MODES:
            raise ConfigError(
                "Unknown resize_mode '{}', expected one of {}".format(
                    self.resize_mode, ", ".join(RESIZE_MODES)
                ),
                field="resize_mode",
            )
        _check_int(self, "image_max_dim", 64)
        if self.image_max_dim % 64:
            raise ConfigError(
                "image_max_dim must be a multiple of 64, got {}".format(self.image_max_dim),
                field="image_max_dim",
            )
        _check_int(self, "image_min_dim", 0)
        if self.image_min_dim > self.image_max_dim:
            raise ConfigError(
                "image_min_dim ({}) is larger than image_max_dim ({})".format(
                    self.image_min_dim, self.image_max_dim
                ),
                field="image_min_dim",
            )
        if self.resize_mode == "pad64" and self.image_min_dim % 64:
            raise ConfigError(
                "image_min_dim must be a multiple of 64 in pad64 mode", field="image_min_dim"
            )
        _check_real(self, "image_min_scale", 0.0)

    def _validate_pyramid(self):
        _check_list(self, "backbone_strides", _is_positive_int, 5, "5 positive integers")
        _check_list(self, "rpn_anchor_scales", _is_positive_real, len(self.backbone_strides),
                    "one positive size per pyramid level")
        _check_list(self, "rpn_anchor_ratios", _is_positive_real, None, "positive numbers")
        if not self.rpn_anchor_ratios:
            raise ConfigError("rpn_anchor_ratios must not be empty", field="rpn_anchor_ratios")

    def _validate_masks(self):
        if not isinstance(self.use_mini_mask, bool):
            raise ConfigError("use_mini_mask must be true or false", field="use_mini_mask")
        if self.use_mini_mask:
            _check_list(self, "mini_mask_shape", _is_positive_int, 2, "(height, width)")
        _check_list(self, "mask_shape", _is_positive_int, 2, "(height, width)")
        # the mask head upsamples its pooled ROI once by 2
        expected = [2 * self.mask_pool_size] * 2
        if list(self.mask_shape) != expected:
            raise ConfigError(
                "mask_shape must be {} for mask_pool_size {}".format(expected, self.mask_pool_size),
                field="mask_shape",
            )

    def _validate_loss_weights(self):
        weights = self.loss_weights
        if not isinstance(weights, dict) or set(weights) != set(LOSS_NAMES):
            raise ConfigError(
                "loss_weights must have exactly the keys {}".format(", ".join(LOSS_NAMES)),
                field="loss_weights",
            )
        for key, value in weights.items():
            if not _is_real(value) or value < 0:
                raise ConfigError(
                    "loss_weights['{}'] must be a non-negative number".format(key),
                    field="loss_weights",
                )

    # ---------------------------------------------------- serialization
    def to_dict(self):
        """A deep copy of all fields as plain JSON-ready Python values."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        """Build and validate a Config from `to_dict()` output.

        Missing keys take their defaults; an unknown key raises ConfigError
        naming it.
        """
        if not isinstance(values, dict):
            raise ConfigError("Configuration must be a mapping of field names to values")
        known = {f.name for f in dataclasses.fields(cls)}
        for key in values:
            if key not in known:
                raise ConfigError("Unknown configuration field '{}'".format(key), field=key)
        try:
            config = cls(**copy.deepcopy(values))
        except (TypeError, ValueError) as error:
            raise ConfigError("Invalid configuration: {}".format(error)) from error
        return config.validate()

    def to_json(self, path):
        """Write the configuration to `path` as JSON, atomically (a temporary
        file in the same folder replaces `path` only once fully written)."""
        folder = os.path.dirname(os.path.abspath(path))
        tmp_name = None
        try:
            with tempfile.NamedTemporaryFile(
                "w", dir=folder, prefix=".config-", suffix=".tmp", delete=False,
                encoding="utf-8",
            ) as tmp:
                tmp_name = tmp.name
                json.dump(self.to_dict(), tmp, indent=2)
                tmp.write("\n")
                tmp.flush()
                os.fsync(tmp.fileno())
            os.replace(tmp_name, path)
        except OSError as error:
            if tmp_name and os.path.exists(tmp_name):
                os.remove(tmp_name)
            raise ConfigError(
                "Cannot write configuration file '{}': {}".format(path, error)
            ) from error

    @classmethod
    def from_json(cls, path):
        """Read and validate a configuration written by `to_json`."""
        try:
            with open(path, encoding="utf-8") as stream:
                values = json.load(stream)
        except OSError as error:
            raise ConfigError(
                "Cannot read configuration file '{}': {}".format(path, error)
            ) from error
        except ValueError as error:
            raise ConfigError(
                "Configuration file '{}' is not valid JSON: {}".format(path, error)
            ) from error
        return cls.from_dict(values)


# ------------------------------------------------------------ field checks
def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_positive_int(value):
    return _is_int(value) and value > 0


def _is_positive_real(value):
    return _is_real(value) and value > 0


def _check_str(config, name):
    value = getattr(config, name)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError("{} must be a non-empty string".format(name), field=name)


def _check_int(config, name, minimum):
    value = getattr(config, name)
    if not _is_int(value) or value < minimum:
        raise ConfigError(
            "{} must be an integer >= {}, got {!r}".format(name, minimum, value), field=name
        )


def _check_real(config, name, minimum, maximum=None, inclusive=True):
    """Check minimum <= value (< if not inclusive) and value <= maximum."""
    value = getattr(config, name)
    ok = _is_real(value) and (value >= minimum if inclusive else value > minimum)
    if ok and maximum is not None:
        ok = value <= maximum
    if not ok:
        bounds = "{} {}".format(">=" if inclusive else ">", minimum)
        if maximum is not None:
            bounds += " and <= {}".format(maximum)
        raise ConfigError("{} must be a number {}, got {!r}".format(name, bounds, value),
                          field=name)


def _check_list(config, name, item_ok, length, what):
    """Check that field `name` is a list (of `length` items if given)."""
    value = getattr(config, name)
    if (
        not isinstance(value, (list, tuple))
        or (length is not None and len(value) != length)
        or not all(item_ok(v) for v in value)
    ):
        count = "" if length is None else "{} item(s): ".format(length)
        raise ConfigError(
            "{} must be a list of {}{}, got {!r}".format(name, count, what, value), field=name
        )
