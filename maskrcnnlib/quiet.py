"""Import TensorFlow with its own logs kept off a module's output.

TensorFlow 2.21 writes C++ log lines to file descriptor 2, where GRASS users read
module messages: oneDNN and CPU notices while it loads (whatever
TF_CPP_MIN_LOG_LEVEL says), then error-level lines such as ``E0000 00:00:...
node_def_util.cc:682] NodeDef mentions attribute ...`` (shown at its default
level and at TF_CPP_MIN_LOG_LEVEL=2). Unless they are asked for (GRASS
``--verbose``, or MASKRCNN_TF_LOG=1), a module that imports TensorFlow here:

- sets TF_CPP_MIN_LOG_LEVEL=3 (fatal only: TensorFlow applies it to its absl logs too),
- sends fd 2 to /dev/null while TensorFlow loads,
- passes fd 2 through maskrcnnlib/logfilter.py, a process that drops what still
  looks like a C++ log line and passes everything else on in order,
- sets the Python loggers of TensorFlow and absl to fatal only and ignores Python
  warnings (Keras and TensorFlow warn through the warnings module).
"""
import atexit
import logging
import os
import subprocess
import sys
import warnings

from maskrcnnlib.errors import MaskRCNNError

DEBUG_VARIABLE = "MASKRCNN_TF_LOG"
_filter = {}  # the running filter: process and the saved real stderr


def tensorflow_logs_wanted(environ=None):
    """True with MASKRCNN_TF_LOG set (other than empty or 0) or GRASS_VERBOSE >= 3."""
    environ = os.environ if environ is None else environ
    if environ.get(DEBUG_VARIABLE, "").strip() not in ("", "0"):
        return True
    try:
        return int(environ.get("GRASS_VERBOSE", "2")) >= 3
    except ValueError:
        return False


def filter_stderr():
    """Pass fd 2 of this process (and of the processes it starts) through the log
    line filter until exit; returns False where the filter cannot start."""
    if _filter:
        return True
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "logfilter.py")
    sys.stderr.flush()
    try:
        process = subprocess.Popen([sys.executable, "-I", "-S", script],
                                   stdin=subprocess.PIPE, stdout=2)
    except OSError:
        return False
    saved = os.dup(2)
    os.dup2(process.stdin.fileno(), 2)
    process.stdin.close()  # fd 2 is now the only end of the pipe here
    _filter.update(process=process, saved=saved)
    atexit.register(_stop_filter)
    return True


def _stop_filter():
    """Give fd 2 back to the real stderr; wait until the filter has passed all on."""
    if not _filter:
        return
    sys.stderr.flush()
    os.dup2(_filter["saved"], 2)  # closes the pipe: the filter reads to its end
    os.close(_filter["saved"])
    try:
        _filter["process"].wait(timeout=10)  # longer only where a child left runs on
    except subprocess.TimeoutExpired:
        pass
    _filter.clear()


def _quiet_python_loggers():
    for name in ("tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def import_tensorflow():
    """Import and return tensorflow; unless tensorflow_logs_wanted(), with its logs
    kept off the output as the module docstring says.

    Python exceptions are not hidden: they propagate after stderr is restored; a
    missing TensorFlow raises MaskRCNNError naming the interpreter.
    """
    quiet = not tensorflow_logs_wanted()
    if quiet:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        filter_stderr()
        warnings.simplefilter("ignore")
        _quiet_python_loggers()
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            if quiet:
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
    if quiet:
        _quiet_python_loggers()
    return tensorflow
