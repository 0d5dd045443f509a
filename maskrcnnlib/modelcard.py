"""Model cards: the JSON written beside each .h5 checkpoint, and what to assume without one.

A card (mask_rcnn_<name>_<epoch>.json beside mask_rcnn_<name>_<epoch>.h5) holds the
class names, band names, the full Config (normalization included) and training
facts. A .h5 file without a card (matterport's mask_rcnn_coco.h5, models of the
2018 addon) is read for what it holds (backbone, class count, band count) and
everything else takes the 2018 addon's detection settings.
"""
import json
import os
import tempfile

from maskrcnnlib.config import Config
from maskrcnnlib.errors import ConfigError, ModelFileError

CARD_FORMAT = "i.ann.maskrcnn model card"
CARD_VERSION = 1

# What the 2018 i.ann.maskrcnn.detect used: its ModelConfig(numClasses=...) defaults
# (768 px square molding); everything else is matterport's default, as in Config.
LEGACY_DETECT_SETTINGS = {"image_min_dim": 768, "image_max_dim": 768,
                          "resize_mode": "square", "image_min_scale": 0.0}


def card_path(weights_path):
    """The card's path for a weights file: same name, .json."""
    return os.path.splitext(os.fspath(weights_path))[0] + ".json"


def write_card(weights_path, config, extra=None):
    """Write the card beside weights_path atomically; returns its path."""
    card = {"format": CARD_FORMAT, "version": CARD_VERSION,
            "weights": os.path.basename(os.fspath(weights_path)),
            "classes": list(config.class_names), "bands": config.bands,
            "band_names": list(config.band_names), "config": config.to_dict()}
    card.update(extra or {})
    path = card_path(weights_path)
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(dir=directory, suffix=".json.tmp")
    try:
        with os.fdopen(handle, "w") as stream:
            json.dump(card, stream, indent=1)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def read_card(weights_path):
    """The card of a weights file as a dict, or None when there is none."""
    path = card_path(weights_path)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as stream:
            card = json.load(stream)
    except (OSError, ValueError) as error:
        raise ModelFileError("Cannot read the model card {}: {}".format(path, error),
                             path=path) from error
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise ModelFileError("{} is not an i.ann.maskrcnn model card".format(path),
                             path=path)
    return card


def _check_class_count(classes, num_classes, source):
    if classes is not None and len(classes) != num_classes - 1:
        raise ConfigError(
            "classes= names {} classes but {} holds {} classes (plus background)".format(
                len(classes), source, num_classes - 1), field="classes")


def config_for_weights(weights_path, classes=None):
    """The Config to rebuild the network of a weights file.

    classes: names given by the user (classes=); with a card they rename the card's
    classes by order, without one they are required. Raises ConfigError when the
    count does not fit the file, ModelFileError when the file is unreadable.
    """
    from maskrcnnlib.model.weights import inspect_h5  # h5py only when a file is read

    card = read_card(weights_path)
    if card is not None:
        config = Config.from_dict(card["config"])
        _check_class_count(classes, config.num_classes, card_path(weights_path))
        if classes is not None:
            config.class_names = list(classes)
        return config
    facts = inspect_h5(weights_path)
    missing = [key for key in ("backbone", "num_classes", "bands") if facts.get(key) is None]
    if missing:
        raise ModelFileError("{} does not tell the model's {} (no model card beside it)".format(
            weights_path, ", ".join(missing)), path=os.fspath(weights_path))
    if classes is None:
        raise ConfigError("{} has no model card: give the names of its {} classes "
                          "(classes=)".format(weights_path, facts["num_classes"] - 1),
                          field="classes")
    _check_class_count(classes, facts["num_classes"], weights_path)
    values = dict(LEGACY_DETECT_SETTINGS, backbone=facts["backbone"],
                  num_classes=facts["num_classes"], bands=facts["bands"],
                  class_names=list(classes))
    if facts.get("pyramid_size"):
        values["top_down_pyramid_size"] = facts["pyramid_size"]
    if facts.get("fc_layers_size"):
        values["fpn_classif_fc_layers_size"] = facts["fc_layers_size"]
    if facts.get("anchors_per_location") not in (None, 3):
        raise ModelFileError("{} has {} anchors per location; without a model card only "
                             "matterport's 3 anchor ratios are known".format(
                                 weights_path, facts["anchors_per_location"]),
                             path=os.fspath(weights_path))
    return Config(**values).validate()
