"""The dense part (backbone, FPN, RPN) in 8-bit integers on the CPU, by ONNX Runtime.

A Detector with precision="int8" runs its dense part here and its heads in
TensorFlow. The dense part is written as a float32 ONNX graph (model.onnxexport),
then quantized by ONNX Runtime's static quantization: weights as signed 8-bit integers per output
channel, activations as unsigned 8-bit integers with one scale per tensor, the
scales from the largest and smallest values each tensor takes on calibration
images (molded inputs like the ones to detect). ONNX Runtime then runs the
convolutions on the CPU's 8-bit dot-product instructions (AVX512-VNNI, AVX-VNNI,
AMX-INT8), which int8 needs (has_vnni). Without them ONNX Runtime multiplies
unsigned by signed 8-bit values with an instruction whose pairwise sums saturate
at 16 bits; the ways around it lose accuracy on the tests' trained model (computed
exactly on a VNNI CPU, float32 heads, against float32's AP75 0.365 and mAP 0.481):
7-bit weights (ONNX Runtime's `reduce_range`) AP75 0.337, mAP 0.469; unsigned 8-bit
weights AP75 0.334, mAP 0.473; signed 8-bit weights as here 0.361, 0.482.

Both files are kept in a cache folder, so that a later run (another process)
with the same weights and tile shape skips the export, and with the same
calibration images also the calibration:
``$MASKRCNN_INT8_CACHE``, else ``$XDG_CACHE_HOME/i.ann.maskrcnn/int8``, else
``~/.cache/i.ann.maskrcnn/int8``; ``MASKRCNN_INT8_CACHE=0`` keeps nothing (each
Detector works in a temporary folder). The newest KEEP files of each kind stay;
deleting the folder is always safe. A ResNet-50's float32 export is about 110 MB,
its int8 model about 30 MB.
"""
import hashlib
import importlib.metadata
import os
import tempfile

import numpy as np

VARIABLE = "MASKRCNN_INT8_CACHE"
KEEP = 6
FORMAT = 1  # bump when the export or quantization settings change
INPUT_NAME = "input_image"


def missing_packages():
    """The packages int8 needs that this Python cannot import (names for pip)."""
    import importlib.util

    return [name for name in ("onnxruntime", "onnx") if importlib.util.find_spec(name) is None]


def cache_dir(environ=None):
    """The cache folder, or None where the cache is off."""
    from maskrcnnlib.compilecache import user_cache_folder

    return user_cache_folder(VARIABLE, "int8", environ)


def has_vnni(flags):
    """True where the CPU's flags name an 8-bit dot-product instruction, which int8
    needs (see the module's docstring)."""
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags))


def _version(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def weights_digest(model, input_shape):
    """A digest of a dense model's weights (names, shapes, values) and the molded
    input's [height, width, bands], with the exporting packages' versions."""
    digest = hashlib.sha256()
    digest.update(repr((FORMAT, tuple(int(v) for v in input_shape), _version("onnx"),
                        _version("onnxruntime"))).encode())
    for variable in model.weights:
        value = np.ascontiguousarray(np.asarray(variable), dtype=np.float32)
        digest.update(repr((variable.path, value.shape)).encode())
        digest.update(value.tobytes())
    return digest.hexdigest()[:20]


def images_digest(images):
    """A digest of calibration images (molded arrays)."""
    digest = hashlib.sha256()
    for image in images:
        value = np.ascontiguousarray(image, dtype=np.float32)
        digest.update(repr(value.shape).encode())
        digest.update(value.tobytes())
    return digest.hexdigest()[:20]


def export_onnx(dense, input_shape, path):
    """Write a dense model as float32 ONNX (model.onnxexport), batch size free."""
    import onnx

    from maskrcnnlib.model.onnxexport import dense_to_onnx

    onnx.save_model(dense_to_onnx(dense, input_shape), path)


class _Images:
    """ONNX Runtime's calibration reader over molded images, one at a time, in the
    ranges quantize_static asks for (set_range)."""

    def __init__(self, images):
        self._images = images
        self.set_range(0, len(images))

    def __len__(self):
        return len(self._images)

    def set_range(self, start_index, end_index):
        self._items = iter(self._images[start_index:end_index])

    def get_next(self):
        image = next(self._items, None)
        if image is None:
            return None
        return {INPUT_NAME: np.ascontiguousarray(image[None], dtype=np.float32)}


def quantize_onnx(source, target, images):
    """Quantize a float32 ONNX model statically, calibrated on molded images
    ([H, W, bands] each), into target."""
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as work:
        prepared = os.path.join(work, "prepared.onnx")
        # shape inference and graph optimisation first, as ONNX Runtime recommends;
        # symbolic inference needs sympy and our shapes are static but for the batch
        quant_pre_process(source, prepared, skip_symbolic_shape=True)
        quantize_static(prepared, target, _Images(images), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        # ranges merged after each image (set_range), not every
                        # tensor of every image held until the end
                        extra_options={"CalibStridedMinMax": 1})


def _prune(folder, prefix):
    """Keep the KEEP newest files of one kind."""
    found = sorted((entry for entry in os.scandir(folder)
                    if entry.name.startswith(prefix) and entry.name.endswith(".onnx")),
                   key=lambda entry: entry.stat().st_mtime, reverse=True)
    for entry in found[KEEP:]:
        try:
            os.remove(entry.path)
        except OSError:
            pass


def _write_atomically(folder, name, write):
    """write(path) into a temporary file of folder, then renamed to name."""
    handle, partial = tempfile.mkstemp(dir=folder, prefix=".partial-", suffix=".onnx")
    os.close(handle)
    try:
        write(partial)
        os.replace(partial, os.path.join(folder, name))
    finally:
        if os.path.exists(partial):
            os.remove(partial)


class QuantizedDense:
    """The int8 dense part of one Detector: made for a molded shape and calibration
    images when first needed, from the cache where it is there, and made anew after
    the Detector's weights change (drop()).

    dense: the Detector's dense keras model (maskrcnn.split_inference_model; its
    weights are read as float32 whatever its dtype policy). threads: ONNX Runtime's
    intra-op threads (None: its default, one per physical core).
    """

    def __init__(self, dense, threads=None):
        self._dense = dense
        self._threads = threads
        self._session = None
        self._shape = None
        self._calibration = None
        self.origin = None  # how the current model was had: "made", "export cached", "cached"

    def drop(self):
        """The weights were set: the current int8 model no longer matches them."""
        self._session = None

    def calibrate(self, images):
        """Calibrate on these molded images ([H, W, bands] each, one shape) and load
        the int8 model for their shape now (from the cache, or made)."""
        images = [np.asarray(image, dtype=np.float32) for image in images]
        if not images:
            raise ValueError("calibration needs at least one image")
        self._calibration = images
        self._session = None
        self._session = self._load(images[0].shape)

    def run(self, molded):
        """The dense outputs (numpy, float32) of a molded batch."""
        if self._session is None:
            if self._calibration is None:
                self.calibrate(list(molded))
            else:
                self._session = self._load(molded.shape[1:])
        elif tuple(molded.shape[1:]) != self._shape:
            raise ValueError("the int8 model is made for molded images of {}, got {}".format(
                self._shape, tuple(molded.shape[1:])))
        return self._session.run(None, {INPUT_NAME: np.ascontiguousarray(molded,
                                                                         dtype=np.float32)})

    def _load(self, input_shape):
        import onnxruntime

        shapes = {image.shape for image in self._calibration}
        if shapes != {tuple(input_shape)}:
            raise ValueError("calibration images mold to {}, the batch to {}".format(
                sorted(shapes), tuple(input_shape)))
        dense = self._dense
        key = weights_digest(dense, input_shape)
        name = "int8-{}-{}.onnx".format(key, images_digest(self._calibration))
        folder = cache_dir()
        temporary = None
        if folder is None:
            temporary = tempfile.TemporaryDirectory(prefix="maskrcnn-int8-")
            folder = temporary.name
        os.makedirs(folder, exist_ok=True)
        try:
            exported = "float-{}.onnx".format(key)
            self.origin = "cached"
            if os.path.exists(os.path.join(folder, name)):
                os.utime(os.path.join(folder, name))  # recently used: kept by _prune
            else:
                self.origin = "export cached"
                if os.path.exists(os.path.join(folder, exported)):
                    os.utime(os.path.join(folder, exported))
                else:
                    self.origin = "made"
                    _write_atomically(folder, exported,
                                      lambda path: export_onnx(dense, input_shape, path))
                _write_atomically(folder, name, lambda path: quantize_onnx(
                    os.path.join(folder, exported), path, self._calibration))
            for kind in ("float-", "int8-"):
                _prune(folder, kind)
            options = onnxruntime.SessionOptions()
            if self._threads:
                options.intra_op_num_threads = int(self._threads)
            options.inter_op_num_threads = 1
            # TensorFlow's heads run next on the same cores: ONNX Runtime's threads
            # sleep instead of spinning between its ops (heads 3 to 7 % faster on the
            # Zen 4, docs/benchmarks.md)
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            session = onnxruntime.InferenceSession(os.path.join(folder, name), options,
                                                   providers=["CPUExecutionProvider"])
        finally:
            if temporary is not None:
                temporary.cleanup()
        self._shape = tuple(int(v) for v in input_shape)
        return session
