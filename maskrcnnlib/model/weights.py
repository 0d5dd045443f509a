"""Weights files (.h5) in the layout of matterport / Keras 2 save_weights.

Layout (what matterport's mask_rcnn_coco.h5 and the 2018 addon's models use):

    /                       attrs: layer_names (bytes array, every layer in
                            model order), backend, keras_version (bytes)
    /<layer>                attr weight_names, e.g. [b"conv1/kernel:0",
                            b"conv1/bias:0"]; empty for layers without weights
    /<layer>/<weight name>  one dataset per weight: /conv1/conv1/kernel:0

A weight name is "<leaf layer>/<variable>:0". For a plain layer the leaf is
the layer itself; for a wrapper (RoiDistributed, TimeDistributed) it is the
wrapper's name ("mrcnn_class_conv1/kernel:0"); for a nested model such as
rpn_model it is the inner layer ("rpn_model" group holding
"rpn_conv_shared/kernel:0", ...). Loading matches layers by name and weights
by variable (kernel, bias, gamma, beta, moving_mean, moving_variance), never
by position, so layer order and unnamed layers do not matter.

Pure h5py + numpy: the Keras model is only read (layers, variables) and
written through Variable.assign.
"""

import dataclasses
import os
import re

import h5py
import keras
import numpy as np

from maskrcnnlib.errors import ModelFileError

# Layers that depend on the number of classes; -e skips them.
HEAD_LAYERS = ("mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask")
# HDF5 keeps attributes in the object header, limited to 64 KiB; Keras 2 splits
# longer attributes into name0, name1, ... and so do we.
_ATTR_LIMIT = 64512
# matterport's backbones, recognized by block type and number of res4 blocks.
_BACKBONES = {("bottleneck", 6): "resnet50", ("bottleneck", 23): "resnet101",
              ("basic", 2): "resnet18", ("basic", 6): "resnet34"}
_INPUT_CONV = "conv1"


@dataclasses.dataclass
class LoadReport:
    """What load_weights_h5 did, by layer name.

    loaded: layers whose every weight came from the file.
    skipped: layers left out because they were in `exclude`.
    initialized: layers only partly taken from the file, with the reason
        (e.g. conv1 filters for bands the file lacks).
    missing: layers absent from the file, left at their initial values
        (only with strict=False).
    unused: file layers with weights that no model layer took.
    """

    loaded: list = dataclasses.field(default_factory=list)
    skipped: list = dataclasses.field(default_factory=list)
    initialized: list = dataclasses.field(default_factory=list)
    missing: list = dataclasses.field(default_factory=list)
    unused: list = dataclasses.field(default_factory=list)


# ---------------------------------------------------------------- naming --

def layer_weights(layer):
    """[(h5 weight name, variable)] of one layer, in the layer's order.

    Nested models contribute the weights of their layers, named after those
    layers; any other layer (wrappers included) names its variables after
    itself.
    """
    if isinstance(layer, keras.Model):
        return [pair for sub in layer.layers for pair in layer_weights(sub)]
    return [("{}/{}:0".format(layer.name, v.name), v) for v in layer.weights]


def weight_key(weight_name, nested=False):
    """Key matching a file weight to a model weight.

    "conv1/kernel:0" -> "kernel" for a plain layer (Keras 2 may have written
    "conv1_1/kernel:0"); "rpn_conv_shared/kernel:0" -> "rpn_conv_shared/kernel"
    inside a nested model.
    """
    parts = re.sub(r":\d+$", "", weight_name).split("/")
    return "/".join(parts[-2:]) if nested else parts[-1]


def _model_layers(model, file_groups):
    """Top-level layers of the model to match against file groups.

    A nested model that has no group of its own in the file is opened up so
    its layers can match groups one by one.
    """
    for layer in model.layers:
        if isinstance(layer, keras.Model) and layer.name not in file_groups:
            yield from _model_layers(layer, file_groups)
        else:
            yield layer


# ---------------------------------------------------------- attributes --

def _write_names_attr(group, name, names):
    """Store a list of str as a bytes-array attribute, split if too long."""
    data = np.array([n.encode("utf8") for n in names], dtype="S")
    if not len(names):
        data = np.zeros((0,), dtype="S1")
    chunks = max(1, -(-data.nbytes // _ATTR_LIMIT))
    if chunks == 1:
        group.attrs[name] = data
        return
    for i, part in enumerate(np.array_split(data, chunks)):
        group.attrs["{}{}".format(name, i)] = part


def _read_names_attr(group, name):
    """Read a names attribute written by Keras 2 or _write_names_attr."""
    if name in group.attrs:
        values = list(group.attrs[name])
    elif "{}0".format(name) in group.attrs:
        values, i = [], 0
        while "{}{}".format(name, i) in group.attrs:
            values.extend(group.attrs["{}{}".format(name, i)])
            i += 1
    else:
        return None
    return [v.decode("utf8") if isinstance(v, bytes) else str(v)
            for v in values]


# ----------------------------------------------------------------- save --

def save_weights_h5(model, path):
    """Write the model's weights to `path` in the matterport/Keras 2 layout.

    model: a Keras model whose top-level layers carry matterport's names.
    The file is written next to `path` and moved over it only when complete,
    so an interrupted save never leaves a truncated weights file.
    Raises ModelFileError when the file cannot be written.
    """
    path = os.fspath(path)
    # Same folder, so os.replace is an atomic rename.
    tmp = "{}.{}.tmp".format(path, os.getpid())
    try:
        with h5py.File(tmp, "w") as f:
            _write_names_attr(f, "layer_names", [l.name for l in model.layers])
            f.attrs["backend"] = np.bytes_(keras.backend.backend())
            f.attrs["keras_version"] = np.bytes_(keras.__version__)
            for layer in model.layers:
                group = f.create_group(layer.name)
                pairs = layer_weights(layer)
                _write_names_attr(group, "weight_names", [n for n, _ in pairs])
                for name, variable in pairs:
                    group.create_dataset(
                        name, data=keras.ops.convert_to_numpy(variable))
        os.replace(tmp, path)
    except (OSError, ValueError) as err:
        raise ModelFileError("Cannot write weights to {}: {}".format(path, err),
                             path=path) from err
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# ----------------------------------------------------------------- load --

def _open(path):
    """Open a weights file; return (h5py.File, group holding the layers)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelFileError("Weights file {} does not exist".format(path),
                             path=path)
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ModelFileError(
            "{} is not a readable HDF5 weights file (not HDF5, or truncated): "
            "{}".format(path, err), path=path) from err
    root = f
    # Files saved with model.save() keep the weights one level down.
    if "layer_names" not in f.attrs and "model_weights" in f:
        root = f["model_weights"]
    if _read_names_attr(root, "layer_names") is None:
        f.close()
        raise ModelFileError(
            "{} is HDF5 but not a weights file in the Keras 2 / matterport "
            "layout (no layer_names attribute)".format(path), path=path)
    return f, root


def _file_weights(root, layer_name, path):
    """{weight name: h5py dataset} of one file group, in file order."""
    try:
        group = root[layer_name]
        names = _read_names_attr(group, "weight_names") or []
        return {n: group[n] for n in names}
    except (KeyError, OSError, ValueError) as err:
        raise ModelFileError("{}: cannot read the weights of layer {}: {}"
                             .format(path, layer_name, err),
                             path=path, layer=layer_name) from err


def _plan_layer(layer, datasets, path):
    """Pair each model variable of `layer` with a file dataset.

    Returns [(variable, dataset)]; raises ModelFileError naming the layer when
    a weight is missing or its shape does not fit (conv1 may have fewer
    bands in the file than in the model).
    """
    pairs = layer_weights(layer)
    nested = isinstance(layer, keras.Model)
    by_key = {weight_key(n, nested): d for n, d in datasets.items()}
    in_order = list(datasets.values())
    # Keras 2 renames inner layers ("rpn_conv_shared_1") when a model is
    # built twice in one session; their order is still the model's.
    positional = nested and len(in_order) == len(pairs) and not all(
        weight_key(n, nested) in by_key for n, _ in pairs)
    plan = []
    for i, (name, variable) in enumerate(pairs):
        dataset = (in_order[i] if positional
                   else by_key.get(weight_key(name, nested)))
        if dataset is None:
            raise ModelFileError(
                "{}: layer {} has no weight {} (the file has: {})".format(
                    path, layer.name, name, ", ".join(datasets) or "none"),
                path=path, layer=layer.name)
        want, have = tuple(variable.shape), tuple(dataset.shape)
        if want != have and not _fewer_bands(layer.name, want, have):
            raise ModelFileError(
                "{}: weight {} of layer {} has shape {} in the file but {} in "
                "the model{}".format(path, name, layer.name, have, want,
                                     _mismatch_hint(layer.name, want, have)),
                path=path, layer=layer.name)
        plan.append((variable, dataset))
    return plan


def _mismatch_hint(layer_name, want, have):
    """A sentence that names the likely cause of a shape mismatch."""
    if layer_name in HEAD_LAYERS:
        return (" (the file was trained for another number of classes; "
                "exclude the head layers to start them afresh)")
    if layer_name == _INPUT_CONV and len(have) == 4 and len(want) == 4:
        return " (the file was trained on {} bands, the model has {})".format(
            have[2], want[2])
    return ""


def _fewer_bands(layer_name, want, have):
    """True for a conv1 kernel with fewer input bands in the file."""
    return (layer_name == _INPUT_CONV and len(want) == 4 and len(have) == 4
            and want[:2] == have[:2] and want[3] == have[3]
            and have[2] < want[2])


def _widen_bands(array, current, extra_bands):
    """conv1 kernel [7, 7, b_file, 64] -> [7, 7, b_model, 64].

    The file's filters keep their bands; the model's extra bands get the mean
    of the file's filters over bands ("mean": a new band starts out like a
    grey-level version of the old ones) or keep the model's own initial
    values ("model").
    """
    out = np.array(current, dtype=array.dtype, copy=True)
    out[:, :, :array.shape[2], :] = array
    if extra_bands == "mean":
        out[:, :, array.shape[2]:, :] = array.mean(axis=2, keepdims=True)
    return out


def load_weights_h5(model, path, exclude=(), strict=True, extra_bands="mean"):
    """Load weights by layer name from a matterport/Keras 2 .h5 file.

    model: Keras model with matterport's layer names (nested rpn_model and
        per-ROI wrapped head layers included).
    exclude: layer names to leave untouched (HEAD_LAYERS for -e).
    strict: True: a model layer with weights that the file lacks is an error;
        False: it keeps its initial values and is listed in report.missing.
    extra_bands: "mean" or "model", how conv1 filters for bands beyond the
        file's are initialized (see _widen_bands). A file with more bands than
        the model is an error.

    Returns a LoadReport. Raises ModelFileError (with .path and .layer) for an
    unreadable, truncated or non-Keras file, a missing layer (strict), a
    missing weight or a wrongly shaped array. Every shape is checked before
    any weight is assigned.
    """
    path = os.fspath(path)
    if extra_bands not in ("mean", "model"):
        raise ValueError("extra_bands must be 'mean' or 'model'")
    exclude = set(exclude)
    report = LoadReport()
    f, root = _open(path)
    with f:
        file_layers = _read_names_attr(root, "layer_names")
        plans = []
        for layer in _model_layers(model, set(file_layers)):
            if layer.name in exclude:
                report.skipped.append(layer.name)
            elif not layer_weights(layer):
                continue
            elif layer.name in file_layers and layer.name in root:
                datasets = _file_weights(root, layer.name, path)
                plans.append((layer.name, _plan_layer(layer, datasets, path)))
            elif strict:
                raise ModelFileError(
                    "{} has no weights for layer {} (use a matching model or "
                    "exclude the layer)".format(path, layer.name),
                    path=path, layer=layer.name)
            else:
                report.missing.append(layer.name)
        for name, plan in plans:
            _assign(name, plan, path, extra_bands, report)
        taken = {name for name, _ in plans} | set(report.skipped)
        report.unused = [n for n in file_layers if n not in taken
                         and n in root and _read_names_attr(root[n],
                                                            "weight_names")]
    return report


def _assign(layer_name, plan, path, extra_bands, report):
    """Read the planned datasets and assign them to the variables."""
    widened = False
    for variable, dataset in plan:
        try:
            array = dataset[()]
        except (OSError, ValueError, KeyError) as err:
            raise ModelFileError("{}: cannot read the weights of layer {}: {}"
                                 .format(path, layer_name, err),
                                 path=path, layer=layer_name) from err
        if tuple(array.shape) != tuple(variable.shape):
            current = keras.ops.convert_to_numpy(variable)
            array = _widen_bands(array, current, extra_bands)
            widened = True
        variable.assign(array.astype(variable.dtype))
    if widened:
        report.initialized.append(
            "{} (filters of the bands missing from the file: {})".format(
                layer_name, "mean of the file's filters"
                if extra_bands == "mean" else "model's initial values"))
    else:
        report.loaded.append(layer_name)


# -------------------------------------------------------------- inspect --

def file_layout(path):
    """{layer: [(weight name, shape tuple), ...]} of every layer group in a weights
    file, in file order (layers without weights map to []). Raises ModelFileError
    for an unreadable or non-Keras file."""
    path = os.fspath(path)
    f, root = _open(path)
    with f:
        layout = {}
        for name in _read_names_attr(root, "layer_names"):
            if name in root:
                layout[name] = [(weight, tuple(dataset.shape)) for weight, dataset
                                in _file_weights(root, name, path).items()]
    return layout


def inspect_h5(path):
    """Describe a Mask R-CNN weights file without building a model.

    Returns a dict: backbone ("resnet50", "resnet101", "resnet18",
    "resnet34" or None when unknown), num_classes (columns of the
    mrcnn_class_logits kernel, or None), bands (input bands of the conv1
    kernel, or None), pyramid_size, anchors_per_location, fc_layers_size
    (or None), keras_version (str or None), layer_names (all layers, in file
    order). Raises ModelFileError for an unreadable or non-Keras file.
    """
    path = os.fspath(path)
    f, root = _open(path)
    with f:
        names = _read_names_attr(root, "layer_names")
        shapes = {}
        for name in names:
            if name not in root:
                continue
            group = root[name]
            for wname in _read_names_attr(group, "weight_names") or []:
                if wname in group:
                    # By full name (rpn_model's inner layers) and by group.
                    short = re.sub(r":\d+$", "", wname)
                    shapes[short] = group[wname].shape
                    shapes[name + "/" + short.split("/")[-1]] = \
                        group[wname].shape
        version = f.attrs.get("keras_version")
    res4 = {m.group(1) for n in names
            for m in [re.match(r"^res4([a-z]+)_branch2a$", n)] if m}
    kind = "bottleneck" if "res2a_branch2c" in names else "basic"

    def dim(weight, axis):
        shape = shapes.get(weight)
        return int(shape[axis]) if shape is not None else None

    raw = dim("rpn_class_raw/kernel", -1)
    return {
        "backbone": _BACKBONES.get((kind, len(res4))),
        "num_classes": dim("mrcnn_class_logits/kernel", -1),
        "bands": dim("conv1/kernel", 2),
        "pyramid_size": dim("fpn_c5p5/kernel", -1),
        "anchors_per_location": raw // 2 if raw is not None else None,
        "fc_layers_size": dim("mrcnn_class_conv1/kernel", -1),
        "keras_version": (version.decode("utf8") if isinstance(version, bytes)
                          else None if version is None else str(version)),
        "layer_names": names,
    }


def copy_weights(source, target):
    """Copy weights layer by layer (matching top-level names) from source to target.

    Used to hand a training model's weights to an inference model in memory.
    Returns the names of the layers copied.
    """
    copied = []
    for layer in target.layers:
        if not layer.weights:
            continue
        layer.set_weights(source.get_layer(layer.name).get_weights())
        copied.append(layer.name)
    return copied
