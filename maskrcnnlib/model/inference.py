"""Detection with a Mask R-CNN: images in, instances (boxes, classes, scores, masks) out.

Images are [height, width, bands] arrays in the original pixel values; results are
in the original image's pixels: boxes (y1, x1, y2, x2) int32 with exclusive ends,
masks bool [height, width, N].
"""
import contextlib
import os

import keras
import numpy as np
import tensorflow as tf

from maskrcnnlib import compilecache
from maskrcnnlib.model import winograd
from maskrcnnlib.model.anchors import anchors_for_config
from maskrcnnlib.model.maskrcnn import build_inference_model, split_inference_model
from maskrcnnlib.model.molding import mold_input, unmold_detections
from maskrcnnlib.model.quantized import QuantizedDense, has_vnni
from maskrcnnlib.model.training import compute_precision, cpu_flags, dtype_policy
from maskrcnnlib.model.weights import HEAD_LAYERS, copy_weights, load_weights_h5, save_weights_h5


# Detector precisions and the keras dtype policies their layers compute in (weights
# are float32 either way); int8's keras layers (the heads) take the CPU's fastest
# float: bfloat16 where it has native bfloat16 instructions (heads_policy).
PRECISIONS = {"float32": "float32", "bfloat16": "mixed_bfloat16", "int8": None}


INT8_NEEDS = ("int8 needs a CPU with 8-bit dot-product instructions (AVX512-VNNI, "
              "AVX-VNNI or AMX-INT8; /proc/cpuinfo lists none): without them its "
              "accuracy is not that of float32; use float32 or bfloat16")


def heads_policy(flags=None):
    """The dtype policy of an int8 Detector's heads on a CPU with these flags."""
    return compute_precision("auto", False, flags)[0]


def winograd_applies(layer):
    """True for a Conv2D that Winograd can compute: 3x3, stride 1, no dilation, one
    group, 'same' padding, channels last (whether it pays depends on its map)."""
    return (isinstance(layer, keras.layers.Conv2D) and layer.data_format == "channels_last"
            and tuple(layer.kernel_size) == (3, 3) and tuple(layer.strides) == (1, 1)
            and tuple(layer.dilation_rate) == (1, 1) and layer.padding == "same"
            and layer.groups == 1)


class WinogradConv(keras.layers.Layer):
    """Stands in for a trained 3x3 Conv2D (winograd_applies) in the rewritten dense
    part: on maps of at least winograd.MIN_PIXELS cells it computes the convolution by
    Winograd (model.winograd) from the kernel transformed beforehand, plus the conv's
    bias and activation; elsewhere it calls the conv itself. It reads the conv's own
    variables and holds only the transformed kernels, one per output tile side m that
    its maps use (`transformed`, made by the Detector). A trace that meets a map
    whose m has no transformed kernel yet computes directly and adds m to `wanted`:
    the Detector traces each new shape once that way to learn what to make.
    """

    def __init__(self, conv):
        super().__init__(name=conv.name + "_winograd", dtype=conv.dtype_policy)
        self.conv = conv
        self.transformed = {}  # m -> tf.Variable [(m + 2)^2, C, K]
        self.wanted = set()

    def call(self, inputs):
        height, width, depth = inputs.shape[1:4]
        if height is None or width is None or height * width < winograd.MIN_PIXELS:
            return self.conv(inputs)
        m = winograd.tile_for(height, width, depth)
        if m not in self.transformed:
            self.wanted.add(m)
            return self.conv(inputs)
        outputs = winograd.winograd_conv3x3(inputs, self.conv.kernel, m=m,
                                            transformed=self.transformed[m])
        if self.conv.use_bias:
            outputs = outputs + self.conv.bias
        return self.conv.activation(outputs)

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)


class WinogradDense:
    """The dense part of an inference model rewritten for CPUs: a copy of its graph
    that shares every layer and variable with it except that each Conv2D Winograd
    applies to is wrapped in a WinogradConv; the wrappers' transformed kernels; and
    whether they still match the kernels.

    The model files know nothing of this: only the Detector builds it. Its transforms
    go stale exactly when the Detector sets weights (Detector.load_weights,
    set_weights, copy_weights_from call drop()); they are made anew, all at once,
    before the next run (make()). Weights written past the Detector (into
    Detector.model directly) are not seen: write them through its methods.
    scope: a callable giving the context to make variables in (a distribution
    strategy's scope method), or None.
    """

    def __init__(self, dense, scope=None):
        self._scope = scope or contextlib.nullcontext  # a new context per use
        self.convs = []

        def swap(layer):
            if winograd_applies(layer):
                self.convs.append(WinogradConv(layer))
                return self.convs[-1]
            return layer

        with self._scope():
            self.model = keras.models.clone_model(dense, clone_function=swap, recursive=True)
        self._shapes = set()
        self._current = False
        self._transform_all = None

    def prepare(self, image_shape):
        """Make the transformed kernels a molded batch of this shape needs."""
        image_shape = tuple(int(v) for v in image_shape)
        if image_shape in self._shapes:
            return
        tf.function(lambda image: self.model(image, training=False)).get_concrete_function(
            tf.TensorSpec(image_shape, tf.float32))
        made = False
        with self._scope():
            for conv in self.convs:
                for m in sorted(conv.wanted - set(conv.transformed)):
                    size = winograd.TRANSFORMS[m].a ** 2
                    conv.transformed[m] = tf.Variable(
                        tf.zeros((size,) + tuple(conv.conv.kernel.shape[2:])),
                        trainable=False, name="{}_{}".format(conv.name, m))
                    made = True
                conv.wanted.clear()
        self._shapes.add(image_shape)
        if made:
            entries = [(conv, m) for conv in self.convs for m in sorted(conv.transformed)]
            self._transform_all = (entries, tf.function(
                lambda: [winograd.transform_kernel(conv.conv.kernel, m) for conv, m in entries],
                jit_compile=True))
            self._current = False

    def drop(self):
        """The weights were set: the transforms no longer match them."""
        self._current = False

    def make(self):
        """Transform every kernel anew unless the transforms match the weights."""
        if self._current or self._transform_all is None:
            return
        entries, transform = self._transform_all
        for (conv, m), value in zip(entries, transform()):
            conv.transformed[m].assign(value)
        self._current = True

    @property
    def nbytes(self):
        """Memory the transformed kernels hold (per replica)."""
        return sum(4 * int(np.prod(v.shape)) for conv in self.convs
                   for v in conv.transformed.values())


class Detector:
    """An inference model and the config it was built from.

    devices: with two or more (e.g. every visible GPU), each batch is split among
    them (tf.distribute.MirroredStrategy), a share of its images per device; every
    image's result is the one a single device gives.
    precision: "float32" (default), or "bfloat16": every layer computes in bfloat16
    (keras mixed_bfloat16; weights and outputs stay float32) on the plain graph,
    where oneDNN uses the CPU's native bfloat16 instructions (AVX512_BF16, AMX);
    not compiled. Scores and masks differ slightly from float32's (a test checks
    mask AP on a trained model within 0.01). Or "int8": the dense part (backbone,
    FPN, RPN) in 8-bit integers by ONNX Runtime (model.quantized: exported and
    quantized at the first run, calibrated on the images given to calibrate() or else
    on that run's images, kept in a cache folder for later runs), the heads in
    bfloat16 where the CPU has native bfloat16, else float32; one CPU device with
    VNNI (model.quantized), resize_mode square, not compiled. Mask AP within 0.01
    of float32 on a trained model (a test).
    compiled: run the dense part (backbone, FPN, RPN) compiled by XLA, with the large
    3x3 convs of the backbone, FPN and RPN by Winograd (model.winograd) on kernels
    transformed beforehand (WinogradDense, a rewrite of the built model's dense part
    made here). Results equal the plain graph's up to float32 rounding. Set weights
    through this class's methods (load_weights, set_weights, copy_weights_from): they
    tell the rewrite that its transformed kernels are stale. Each new molded shape
    is traced and compiled anew (seconds), so None (default) compiles only where it
    pays: no GPU visible (GPUs have cuDNN's own fast convolutions) and resize_mode
    "square" (every image molds to one shape); docs/benchmarks.md has the gain on
    CPUs. Compiling costs the first call seconds that only some tens of images repay:
    i.ann.maskrcnn.detect passes False for small regions (maskrcnnlib.detect,
    COMPILE_FROM_TILES).
    What XLA compiles is kept across processes (maskrcnnlib.compilecache), so a
    later run of the same architecture and shape skips most of that wait.
    """

    def __init__(self, config, intermediate=False, devices=None, compiled=None,
                 precision="float32"):
        config.validate()
        if precision not in PRECISIONS:
            raise ValueError("precision must be one of {}, got {!r}".format(
                ", ".join(PRECISIONS), precision))
        if precision in ("bfloat16", "int8"):
            if compiled:
                raise ValueError("the compiled path computes in float32 only")
            compiled = False
        if precision == "int8" and config.resize_mode != "square":
            raise ValueError("int8 needs resize_mode square (one molded shape), got "
                             + config.resize_mode)
        flags = cpu_flags() if precision == "int8" else None
        if precision == "int8" and not has_vnni(flags):
            raise ValueError(INT8_NEEDS)
        if precision == "int8" and devices and len(devices) > 1:
            raise ValueError("int8 runs on the CPU, one device; got {} devices".format(
                len(devices)))
        self.config = config
        self.precision = precision
        self.policy = PRECISIONS[precision] or heads_policy(flags)
        self.strategy = None
        if compiled is not False:
            compilecache.enable()  # before TensorFlow reads its XLA flags (listing devices does)
        if compiled is None:
            compiled = (config.resize_mode == "square"
                        and not tf.config.list_logical_devices("GPU"))
        self.compiled = bool(compiled)
        def build():
            with dtype_policy(self.policy):
                return build_inference_model(config, intermediate=intermediate)

        if devices and len(devices) > 1:
            self.strategy = tf.distribute.MirroredStrategy(devices=list(devices))
            with self.strategy.scope():
                self.model = build()
        else:
            self.model = build()
        self._dense = self._heads = self._winograd = self._int8 = None
        self._largest_batch = 0
        if precision == "int8":
            dense, self._heads, self._sources = split_inference_model(self.model)
            # as many threads as TensorFlow's ops use (ONNX Runtime's default is one
            # per physical core, which halves them on a machine of 2 hyperthreads)
            threads = (tf.config.threading.get_intra_op_parallelism_threads()
                       or len(os.sched_getaffinity(0)))
            self._int8 = QuantizedDense(dense, threads)
            heads = self._heads
            self._run_heads = tf.function(lambda inputs: heads(inputs, training=False),
                                          reduce_retracing=True)
        if self.compiled:
            dense, self._heads, self._sources = split_inference_model(self.model)
            self._winograd = WinogradDense(
                dense, self.strategy.scope if self.strategy else None)
            fast = self._winograd.model
            self._dense = tf.function(lambda image: fast(image, training=False),
                                      jit_compile=True)
        # compiled: static shapes in every trace, which Winograd needs
        self._run = tf.function(self._forward, reduce_retracing=not self.compiled)

    @property
    def replicas(self):
        """Devices a batch is spread over (a good batch is a multiple of it)."""
        return self.strategy.num_replicas_in_sync if self.strategy else 1

    def _forward(self, images, metas, anchors):
        if self.strategy is None:
            return self._infer([images, metas, anchors])
        return self._forward_replicas(images, metas, anchors)

    def _infer(self, inputs):
        """The model's outputs for [images, metas, anchors] (one device's share)."""
        if not self.compiled:
            return self.model(inputs, training=False)
        images, metas, anchors = inputs
        dense = list(self._dense(images))
        parts = {"dense": dense,
                 "heads": self._heads(dense + [metas, anchors], training=False)}
        return [parts[part][i] for part, i in self._sources]

    def _forward_replicas(self, images, metas, anchors):
        """Images padded to a multiple of the replicas (by repeating the last), split
        in order among them, and the outputs joined back in order."""
        replicas = self.replicas
        count = tf.shape(images)[0]
        share = (count + replicas - 1) // replicas
        index = tf.minimum(tf.range(share * replicas), count - 1)
        inputs = [tf.gather(x, index) for x in (images, metas, anchors)]

        def part(context):
            start = context.replica_id_in_sync_group * share
            return [x[start:start + share] for x in inputs]

        values = self.strategy.experimental_distribute_values_from_function(part)
        outputs = self.strategy.run(
            self._infer, args=(values,))
        joined = []
        for output in outputs:
            parts = list(self.strategy.experimental_local_results(output))
            if len(parts[0].shape) > 1:
                # the mask rows run only as far as a part has detections: pad every
                # part to the longest (rows past an image's detections are unused)
                rows = tf.reduce_max([tf.shape(p)[1] for p in parts])
                parts = [tf.pad(p, [[0, 0], [0, rows - tf.shape(p)[1]]]
                                + [[0, 0]] * (len(p.shape) - 2)) for p in parts]
            joined.append(tf.concat(parts, axis=0)[:count])
        return joined

    def _weights_set(self):
        if self._winograd is not None:
            self._winograd.drop()
        if self._int8 is not None:
            self._int8.drop()

    def calibrate(self, images):
        """precision int8: calibrate the activations' 8-bit ranges on these images
        (original pixel values, like detect()'s) and have the int8 model ready: from
        the cache where these weights, shape and images were quantized before, else
        made now (seconds to a minute). Without it the first batch detected
        calibrates. Weights set later make it anew, on the same images."""
        if self._int8 is None:
            raise ValueError("only an int8 Detector is calibrated")
        self._int8.calibrate([self.mold([image])[0][0] for image in images])

    @property
    def int8_origin(self):
        """int8: where its current model came from ("made", "export cached",
        "cached"), None before the first run or for other precisions."""
        return self._int8.origin if self._int8 is not None else None

    def load_weights(self, path, exclude_heads=False, strict=True):
        """Load .h5 weights (matterport layout); returns the LoadReport."""
        exclude = HEAD_LAYERS if exclude_heads else ()
        try:
            return load_weights_h5(self.model, path, exclude=exclude, strict=strict)
        finally:
            self._weights_set()

    def set_weights(self, weights):
        """Set the model's weights from a list of arrays (keras get_weights order)."""
        try:
            self.model.set_weights(weights)
        finally:
            self._weights_set()

    def copy_weights_from(self, model):
        """Copy the weights of the layers this model shares by name with another
        (a training model); returns the names of the layers copied."""
        try:
            return copy_weights(model, self.model)
        finally:
            self._weights_set()

    @property
    def added_bytes(self):
        """Memory the CPU path's transformed kernels hold per replica (0 when plain)."""
        return self._winograd.nbytes if self._winograd is not None else 0

    def save_weights(self, path):
        save_weights_h5(self.model, path)

    def mold(self, images):
        """Molded batch [B, H, W, bands], metas [B, meta], windows, anchors [B, A, 4].

        All images of one call must mold to the same shape (same size, or square mode).
        """
        molded, metas, windows = zip(*(mold_input(np.asarray(image), self.config, i)
                                       for i, image in enumerate(images)))
        shapes = {m.shape for m in molded}
        if len(shapes) != 1:
            raise ValueError("images of one batch must mold to one shape, got {}".format(
                sorted(shapes)))
        anchors = anchors_for_config(self.config, molded[0].shape)
        anchors = np.broadcast_to(anchors, (len(images),) + anchors.shape)
        return (np.stack(molded).astype("float32"), np.stack(metas).astype("float32"),
                windows, np.ascontiguousarray(anchors, dtype="float32"))

    def raw(self, images):
        """The network's outputs (numpy) for a list of images, plus the molding."""
        molded, metas, windows, anchors = self.mold(images)
        count = len(images)
        inputs = (molded, metas, anchors)
        if self.compiled:
            # a short last batch would be a new shape, traced and compiled anew: fill
            # it up to the largest batch so far with copies of its last image, whose
            # results are cut off
            self._largest_batch = max(self._largest_batch, count)
            index = np.minimum(np.arange(self._largest_batch), count - 1)
            inputs = tuple(x[index] for x in inputs)
            self._winograd.prepare(inputs[0].shape)
            self._winograd.make()
        if self._int8 is not None:
            dense = [tf.constant(v) for v in self._int8.run(molded)]
            parts = {"dense": dense, "heads": self._run_heads(
                dense + [tf.constant(metas), tf.constant(anchors)])}
            outputs = [parts[part][i] for part, i in self._sources]
        else:
            outputs = self._run(*(tf.constant(x) for x in inputs))
        return [np.asarray(o, dtype=np.float32)[:count] for o in outputs], molded, windows

    def detect(self, images):
        """Per image a dict: rois [N, 4], class_ids [N], scores [N], masks [H, W, N]."""
        outputs, molded, windows = self.raw(images)
        detections, masks = outputs[0], outputs[1]
        results = []
        for i, image in enumerate(images):
            boxes, class_ids, scores, full_masks = unmold_detections(
                detections[i], masks[i], molded[i].shape, windows[i],
                np.asarray(image).shape)
            results.append({"rois": boxes, "class_ids": class_ids, "scores": scores,
                            "masks": full_masks})
        return results
