"""Published weights to start training from: model=coco and model=imagenet.

Each is downloaded once into a per-user cache and checked before it is kept:

* ``coco``: matterport's ``mask_rcnn_coco.h5`` (ResNet-101 FPN, 80 COCO classes,
  the file the 2018 addon's manual starts from). matterport publishes no checksum;
  the file is checked by its size and by the layer layout of every layer with
  weights (names and shapes), which ``data/matterport_coco_r101_layout.json``
  records.
* ``imagenet``: the ResNet-50 ImageNet weights published for Keras Applications
  (``resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5``, the file matterport's
  ``get_imagenet_weights`` uses), checked by its published MD5. Its layer names are
  those of our ResNet-50 backbone (conv1, bn_conv1, res2a_branch2a, ...).

The cache is ``$MASKRCNN_WEIGHTS_DIR``, else ``$XDG_CACHE_HOME/i.ann.maskrcnn/weights``,
else ``~/.cache/i.ann.maskrcnn/weights``. ``$MASKRCNN_WEIGHTS_URL`` replaces the
download address by a mirror (``<mirror>/<file name>``), for sites that keep their
own copy. A download goes to a temporary file in the cache folder and is renamed
onto its name only once checked: a failed, cut or wrong download leaves nothing.
"""
import collections
import hashlib
import http.client
import json
import os
import tempfile
import urllib.error
import urllib.request

from maskrcnnlib.errors import ModelFileError
from maskrcnnlib.model.weights import file_layout, weight_key

Source = collections.namedtuple("Source", "file_name url size md5 layout")

LAYOUT_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data",
                           "matterport_coco_r101_layout.json")
PRETRAINED = {
    "coco": Source(
        "mask_rcnn_coco.h5",
        "https://github.com/matterport/Mask_RCNN/releases/download/v2.0/mask_rcnn_coco.h5",
        size=257557808, md5=None, layout=LAYOUT_FILE),
    "imagenet": Source(
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "https://github.com/fchollet/deep-learning-models/releases/download/v0.2/"
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        size=None, md5="a268eb855778b3df3c7506639542a6af", layout=None),
}
_CHUNK = 1 << 20


def cache_dir():
    """The folder pretrained files are kept in (not created here)."""
    if os.environ.get("MASKRCNN_WEIGHTS_DIR"):
        return os.environ["MASKRCNN_WEIGHTS_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "i.ann.maskrcnn", "weights")


def download_url(source):
    """Where source is fetched from: its published address, or the mirror's."""
    mirror = os.environ.get("MASKRCNN_WEIGHTS_URL")
    return "{}/{}".format(mirror.rstrip("/"), source.file_name) if mirror else source.url


def cached_path(name):
    """Where the file of PRETRAINED[name] lies (or will lie) in the cache."""
    return os.path.join(cache_dir(), PRETRAINED[name].file_name)


def pretrained_file(name, progress=None, timeout=60):
    """Path of the checked file of PRETRAINED[name], downloaded first when not cached.

    progress: called as progress(bytes so far, total bytes or None) while downloading.
    Raises ModelFileError naming the address, the file name and the cache folder
    when the file can be neither found nor fetched, or fails its check.
    """
    source, path = PRETRAINED[name], cached_path(name)
    folder = os.path.dirname(path)
    if os.path.exists(path):
        problem = check_file(path, source)
        if problem:
            raise ModelFileError(
                "The cached {} is not the published file ({}); delete it and run again "
                "to download it anew, or put the right file there".format(path, problem),
                path=path)
        return path
    os.makedirs(folder, exist_ok=True)
    url = download_url(source)
    handle, partial = tempfile.mkstemp(prefix=source.file_name + ".", suffix=".part",
                                       dir=folder)
    try:
        with os.fdopen(handle, "wb") as stream:
            _download(url, stream, source, path, progress, timeout)
        problem = check_file(partial, source)
        if problem:
            raise ModelFileError("{} gave a file that is not the published {}: {}; nothing "
                                 "was kept".format(url, source.file_name, problem), path=path)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return path


def _download(url, stream, source, path, progress, timeout):
    """Copy url into stream; ModelFileError for HTTP errors, no network, a cut transfer."""
    where = ("download {} by other means and put it at {} (or give model= the path of a "
             "copy)".format(source.file_name, path))
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            total = response.headers.get("Content-Length")
            total = int(total) if total and total.isdigit() else None
            done = 0
            while True:
                try:
                    chunk = response.read(_CHUNK)
                except http.client.IncompleteRead as cut:  # the size check below reports it
                    chunk = cut.partial
                    stream.write(chunk)
                    done += len(chunk)
                    break
                if not chunk:
                    break
                stream.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
    except urllib.error.HTTPError as error:
        raise ModelFileError("Downloading {} failed: HTTP {} {}; {}".format(
            url, error.code, error.reason, where), path=path) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ModelFileError("Cannot download {} ({}): is this machine offline? On an offline "
                             "machine, {}".format(url, reason, where), path=path) from None
    if total is not None and done != total:
        raise ModelFileError("The download of {} stopped after {} of {} bytes; nothing was "
                             "kept. Run again, or {}".format(url, done, total, where), path=path)


def check_file(path, source):
    """None when path is source's published file, else what differs (text)."""
    size = os.path.getsize(path)
    if source.size is not None and size != source.size:
        return "{} bytes where the published file has {}".format(size, source.size)
    if source.md5 is not None:
        digest = hashlib.md5(usedforsecurity=False)
        with open(path, "rb") as stream:
            for block in iter(lambda: stream.read(_CHUNK), b""):
                digest.update(block)
        if digest.hexdigest() != source.md5:
            return "MD5 {} where the published file has {}".format(digest.hexdigest(),
                                                                   source.md5)
    if source.layout is not None:
        return layout_difference(path, source.layout)
    return None


def layout_difference(path, layout_file):
    """None when the .h5 at path has the layers and weight shapes layout_file records."""
    with open(layout_file) as stream:
        recorded = json.load(stream)
    want = {name: [(weight_key(weight), tuple(shape)) for weight, shape in weights]
            for name, weights in recorded["layers"] if weights}
    try:
        have = {name: [(weight_key(weight), shape) for weight, shape in weights]
                for name, weights in file_layout(path).items() if weights}
    except ModelFileError as error:
        return str(error)
    missing = sorted(set(want) - set(have))
    if missing:
        return "{} layers missing, e.g. {}".format(len(missing), missing[0])
    extra = sorted(set(have) - set(want))
    if extra:
        return "{} unexpected layers, e.g. {}".format(len(extra), extra[0])
    for name in want:
        if want[name] != have[name]:
            return "layer {} holds {} instead of {}".format(name, have[name], want[name])
    return None


# The ImageNet file was written by Keras 1: weights are named "<layer>_W:0",
# "<layer>_running_std:0" (a variance, despite the name), not "<layer>/kernel:0".
_KERAS1_VARIABLES = {"W": "kernel", "b": "bias", "gamma": "gamma", "beta": "beta",
                     "running_mean": "moving_mean", "running_std": "moving_variance"}
IMAGENET_BACKBONE = "resnet50_imagenet_backbone.h5"


def imagenet_backbone_file(progress=None, timeout=60):
    """Path of the ImageNet ResNet-50 weights in our file layout (layer/variable:0
    names), made once in the cache from the checked published file."""
    source = pretrained_file("imagenet", progress, timeout)
    path = os.path.join(os.path.dirname(source), IMAGENET_BACKBONE)
    if not os.path.exists(path):
        write_renamed_weights(source, path)
    return path


def ours_variable(layer, weight_name):
    """The variable a file weight holds: "conv1_W:0" or "conv1/kernel:0" -> "kernel"."""
    leaf = weight_key(weight_name)
    if leaf.startswith(layer + "_"):
        return _KERAS1_VARIABLES.get(leaf[len(layer) + 1:], leaf)
    return leaf


def write_renamed_weights(source, path):
    """Copy the weights of source into path, named "<layer>/<variable>:0"; the file
    appears at path only when complete."""
    import h5py
    import numpy as np

    layout = file_layout(source)
    handle, partial = tempfile.mkstemp(suffix=".part", dir=os.path.dirname(path))
    os.close(handle)
    try:
        with h5py.File(source, "r") as original, h5py.File(partial, "w") as copy:
            root = original["model_weights"] if "model_weights" in original else original
            layers = [name for name, weights in layout.items() if weights]
            copy.attrs["layer_names"] = np.array([name.encode() for name in layers])
            for name in layers:
                group = copy.create_group(name)
                names = ["{}/{}:0".format(name, ours_variable(name, weight))
                         for weight, _ in layout[name]]
                group.attrs["weight_names"] = np.array([n.encode() for n in names])
                for new, (weight, _) in zip(names, layout[name]):
                    group.create_dataset(new, data=root[name][weight][()])
        os.replace(partial, path)
    except (OSError, KeyError) as error:
        raise ModelFileError("Cannot convert {} into {}: {}".format(source, path, error),
                             path=source) from None
    finally:
        if os.path.exists(partial):
            os.remove(partial)
