"""Detection with a Mask R-CNN: images in, instances (boxes, classes, scores, masks) out.

Images are [height, width, bands] arrays in the original pixel values; results are
in the original image's pixels: boxes (y1, x1, y2, x2) int32 with exclusive ends,
masks bool [height, width, N].
"""
import contextlib

import numpy as np
import tensorflow as tf

from maskrcnnlib.model import winograd
from maskrcnnlib.model.anchors import anchors_for_config
from maskrcnnlib.model.maskrcnn import build_inference_model, split_inference_model
from maskrcnnlib.model.molding import mold_input, unmold_detections
from maskrcnnlib.model.weights import HEAD_LAYERS, load_weights_h5, save_weights_h5


SAMPLE_STRIDE = 997  # every 997th value (a prime) enters the mixed part of a fingerprint


def _mix(bits, positions):
    """A bijection of uint32 values salted by their positions (xor-shift-multiply)."""
    x = tf.bitwise.bitwise_xor(bits, positions)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(15, tf.uint32)))
    x = x * tf.constant(0x2C1B3C6D, tf.uint32)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(12, tf.uint32)))


def kernel_fingerprints(kernels):
    """[len(kernels), 2] uint32 fingerprints of float32 tensors.

    Column 0: the sum of all values' bits modulo 2^32, which changes with any one
    value. Column 1: the sum of a mixing bijection of every SAMPLE_STRIDE-th value's
    bits salted with its position, which also changes where all values change
    alike (doubling every value adds the same to each value's bits: column 0 can
    miss it) or move (a kernel flipped). One plain-graph pass over the kernels:
    about 5 ms per call for ResNet-50's Winograd kernels (60 MB) on 2 cores, where
    XLA's reductions of them took 8 to 11 ms.
    """
    rows = []
    for kernel in kernels:
        bits = tf.bitcast(tf.reshape(kernel, [-1]), tf.uint32)
        sample = bits[::SAMPLE_STRIDE]
        positions = tf.cast(tf.range(tf.size(sample)), tf.uint32)
        rows.append(tf.stack([tf.reduce_sum(bits), tf.reduce_sum(_mix(sample, positions))]))
    return tf.stack(rows)


class TransformedKernels:
    """Winograd-transformed kernels of the dense part, made beforehand and kept in
    step with the kernels.

    The compiled detector reads them (winograd.precomputed_kernels) instead of
    transforming each kernel on every call: up to 64/9 of a kernel's size written
    and read again, 150 MB per 512x512 image for ResNet-50, which also let 16x16
    maps (ResNet's stage 5 at 512x512) compute by Winograd. They take that memory
    once instead (about 280 MB for ResNet-50 at 512x512).

    prepare(shape): learns which (layer, tile) a molded shape uses (a trace of the
    dense part under winograd.recording_winograd, once per shape) and makes the
    variables holding them. ensure_current(): compares fingerprints of the kernels
    (kernel_fingerprints) with the ones the transforms were made from and makes them
    anew where any kernel changed, however the weights were written (load_weights,
    set_weights, assign).
    """

    def __init__(self, dense, scope=None):
        self._dense = dense
        self._scope = scope
        self._values = {}  # layer -> {m: tf.Variable [(m+2)^2, C, K]}
        self._shapes = set()
        self._made_from = None
        self._fingerprints = self._transforms = None
        self._entries = []  # (layer, m) in the order self._transforms returns them

    def prepare(self, image_shape):
        image_shape = tuple(int(v) for v in image_shape)
        if image_shape in self._shapes:
            return
        found = []
        with winograd.recording_winograd(found):
            tf.function(lambda image: self._dense(image, training=False)).get_concrete_function(
                tf.TensorSpec(image_shape, tf.float32))
        pairs = [(layer, m) for layer, m in found if m not in self._values.get(layer, {})]
        with self._scope or contextlib.nullcontext():
            for layer, m in pairs:
                size = winograd.TRANSFORMS[m].a ** 2
                self._values.setdefault(layer, {})[m] = tf.Variable(
                    tf.zeros((size,) + tuple(layer.kernel.shape[2:])), trainable=False,
                    name="{}_winograd{}".format(layer.name, m))
        self._shapes.add(image_shape)
        if pairs:
            layers = list(self._values)
            entries = [(layer, m) for layer in layers for m in self._values[layer]]
            self._fingerprints = tf.function(
                lambda: kernel_fingerprints([layer.kernel for layer in layers]))
            self._transforms = tf.function(
                lambda: [winograd.transform_kernel(layer.kernel, m) for layer, m in entries],
                jit_compile=True)
            self._entries = entries
            self._made_from = None

    def context(self):
        """winograd.precomputed_kernels with these transforms (for tracing)."""
        return winograd.precomputed_kernels(self._values)

    def ensure_current(self):
        """Make the transforms anew if any kernel changed since they were made."""
        if not self._values:
            return
        fingerprints = np.asarray(self._fingerprints())
        if self._made_from is not None and np.array_equal(fingerprints, self._made_from):
            return
        for (layer, m), value in zip(self._entries, self._transforms()):
            self._values[layer][m].assign(value)
        self._made_from = fingerprints


class Detector:
    """An inference model and the config it was built from.

    devices: with two or more (e.g. every visible GPU), each batch is split among
    them (tf.distribute.MirroredStrategy), a share of its images per device; every
    image's result is the one a single device gives.
    compiled: run the dense part (backbone, FPN, RPN) compiled by XLA, with the large
    3x3 convs of the backbone, FPN and RPN by Winograd (model.winograd) on kernels
    transformed beforehand (TransformedKernels). Results equal the
    plain graph's up to float32 rounding. Each new molded shape is traced and
    compiled anew (seconds), so None (default) compiles only where it pays: no GPU
    visible (GPUs have cuDNN's own fast convolutions) and resize_mode "square"
    (every image molds to one shape); docs/benchmarks.md has the gain on CPUs.
    """

    def __init__(self, config, intermediate=False, devices=None, compiled=None):
        config.validate()
        self.config = config
        self.strategy = None
        if compiled is None:
            compiled = (config.resize_mode == "square"
                        and not tf.config.list_logical_devices("GPU"))
        self.compiled = bool(compiled)
        build = lambda: build_inference_model(  # noqa: E731
            config, intermediate=intermediate, winograd=self.compiled)
        if devices and len(devices) > 1:
            self.strategy = tf.distribute.MirroredStrategy(devices=list(devices))
            with self.strategy.scope():
                self.model = build()
        else:
            self.model = build()
        self._dense = self._heads = self._kernels = None
        self._largest_batch = 0
        if self.compiled:
            dense, self._heads, self._sources = split_inference_model(self.model)
            self._kernels = TransformedKernels(
                dense, self.strategy.scope() if self.strategy else None)

            def run_dense(image):
                with self._kernels.context():
                    return dense(image, training=False)

            self._dense = tf.function(run_dense, jit_compile=True)
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

    def load_weights(self, path, exclude_heads=False, strict=True):
        """Load .h5 weights (matterport layout); returns the LoadReport."""
        exclude = HEAD_LAYERS if exclude_heads else ()
        return load_weights_h5(self.model, path, exclude=exclude, strict=strict)

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
            self._kernels.prepare(inputs[0].shape)
            self._kernels.ensure_current()
        outputs = self._run(*(tf.constant(x) for x in inputs))
        return [np.asarray(o)[:count] for o in outputs], molded, windows

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
