"""Exceptions raised by maskrcnnlib.

The library never calls gs.fatal; it raises one of these and the module
scripts turn them into user-facing GRASS errors. Every message names the bad
thing (the field, the file, the layer) so it can be shown to the user as is.

Hierarchy::

    MaskRCNNError
      +-- ConfigError      (.field: name of the bad Config field, or None)
      +-- DatasetError
      +-- ModelFileError   (.path, .layer: the offending weights file / layer)
      +-- TrainingError
      +-- DetectionError
"""


class MaskRCNNError(Exception):
    """Base class of every error raised on purpose by maskrcnnlib."""


class ConfigError(MaskRCNNError, ValueError):
    """A configuration value is missing, of the wrong type or out of range.

    Attributes:
        field: name of the Config field at fault (str), or None when the
            problem is not tied to one field (e.g. an unreadable JSON file).
    """

    def __init__(self, message, field=None):
        super().__init__(message)
        self.field = field


class DatasetError(MaskRCNNError):
    """The training dataset is missing, empty or inconsistent."""


class ModelFileError(MaskRCNNError):
    """A weights (.h5) or model-card file cannot be read or does not fit.

    Attributes:
        path: the file at fault (str), or None.
        layer: the layer whose weights are missing or mis-shaped (str), or None.
    """

    def __init__(self, message, path=None, layer=None):
        super().__init__(message)
        self.path = path
        self.layer = layer


class TrainingError(MaskRCNNError):
    """Training cannot start or cannot go on (e.g. the loss became NaN)."""


class DetectionError(MaskRCNNError):
    """Detection cannot start or cannot write its output (missing bands, bad map names)."""
