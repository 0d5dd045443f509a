"""Import TensorFlow without its C++ start-up banners on the user's terminal.

TensorFlow 2.21 prints oneDNN and absl notices to file descriptor 2 while it loads,
whatever TF_CPP_MIN_LOG_LEVEL says; GRASS users read module output on that stream.
"""
import os
import sys

from maskrcnnlib.errors import MaskRCNNError


def import_tensorflow():
    """Import and return tensorflow with stderr (fd 2) silenced during the import.

    Python exceptions are not hidden: they propagate after stderr is restored; a
    missing TensorFlow raises MaskRCNNError naming the interpreter.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow
            import keras  # noqa: F401  (its first import also prints through absl)
    except ImportError as error:
        raise MaskRCNNError(
            "{} cannot import TensorFlow ({}): install the Python packages of "
            "requirements.txt for it, or put the environment that has them first on "
            "PATH".format(sys.executable, error)) from error
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    return tensorflow
