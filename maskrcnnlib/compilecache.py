"""XLA's persistent compilation cache, so that a detector's compiled dense part is
kept across runs.

On CPUs the Detector compiles its dense part (backbone, FPN, RPN) with XLA: 6 to 12 s
for a ResNet-50 at 512 x 512 on 2 cores, paid by the first tile of every run.
TensorFlow can keep what XLA compiled in a folder (its flag
``--tf_xla_persistent_cache_directory`` in ``TF_XLA_FLAGS``) and load it in a later
process that compiles the same graph for the same shapes; the weights are not part
of it (they are variables), so one entry serves every model of one architecture,
band count, class count and tile size.

The folder is ``$MASKRCNN_XLA_CACHE``, else ``$XDG_CACHE_HOME/i.ann.maskrcnn/xla``,
else ``~/.cache/i.ann.maskrcnn/xla``, with a subfolder per TensorFlow version and
kind of CPU (a compiled file uses the instructions of the CPU it was made on: a home
folder shared by machines with different CPUs keeps one subfolder each). Entries
are a few MB each (about 4 MB for a ResNet-50 at one tile size); deleting the folder
is always safe. ``MASKRCNN_XLA_CACHE=0`` turns the cache off; a
``--tf_xla_persistent_cache_directory`` already in ``TF_XLA_FLAGS`` is left as it is.

TensorFlow reads its XLA flags once, when it first sets up its devices (listing
them counts) or compiles: enable() has to run before that. i.ann.maskrcnn.detect calls
it before it imports TensorFlow; the Detector calls it too, for library users (where
TensorFlow read its flags already it changes nothing).
"""
import hashlib
import importlib.metadata
import os
import platform

VARIABLE = "MASKRCNN_XLA_CACHE"
FLAG = "--tf_xla_persistent_cache_directory"


def cpu_key():
    """A short name for this kind of CPU: a hash of its model name and instruction
    set flags (from /proc/cpuinfo where there is one)."""
    text = platform.machine() + " " + platform.processor()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            wanted = ("model name", "flags", "features", "cpu family", "model\t")
            for line in cpuinfo:
                if line.lower().startswith(wanted):
                    text += "\n" + line.strip()
                if not line.strip() and "flags" in text:
                    break  # the first processor's block is enough
    except OSError:
        pass
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def cache_dir(environ=None):
    """The folder for this TensorFlow and CPU, or None where the cache is off."""
    chosen = user_cache_folder(VARIABLE, "xla", environ)
    if chosen is None:
        return None
    return os.path.join(chosen, "tf{}-{}".format(tensorflow_version(), cpu_key()))


def user_cache_folder(variable, leaf, environ=None):
    """A cache folder of ours: $variable, else $XDG_CACHE_HOME/i.ann.maskrcnn/leaf, else
    ~/.cache/i.ann.maskrcnn/leaf; None where $variable is 0 (the cache is off)."""
    environ = os.environ if environ is None else environ
    chosen = environ.get(variable, "")
    if chosen.strip() == "0":
        return None
    if chosen:
        return chosen
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "i.ann.maskrcnn", leaf)


def tensorflow_version():
    """The installed TensorFlow's version, read without importing it where possible."""
    for distribution in ("tensorflow", "tensorflow-cpu", "tensorflow-intel", "tf-nightly"):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    import tensorflow as tf

    return tf.__version__


def enable(environ=None):
    """Point XLA's persistent cache at cache_dir() (made here) unless TF_XLA_FLAGS
    already names one or the cache is off. Returns the folder XLA will use, or None.

    Where the folder cannot be made, or its path holds white space (TF_XLA_FLAGS is
    split at spaces), nothing is set: compiling then works as without a cache.
    """
    environ = os.environ if environ is None else environ
    flags = environ.get("TF_XLA_FLAGS", "")
    for word in flags.split():
        if word.startswith(FLAG + "="):
            return word.split("=", 1)[1] or None
    folder = cache_dir(environ)
    if folder is None or any(c.isspace() for c in folder):
        return None
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        return None
    environ["TF_XLA_FLAGS"] = (flags + " {}={}".format(FLAG, folder)).strip()
    return folder
