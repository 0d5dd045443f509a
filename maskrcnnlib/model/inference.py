"""Detection with a Mask R-CNN: images in, instances (boxes, classes, scores, masks) out.

Images are [height, width, bands] arrays in the original pixel values; results are
in the original image's pixels: boxes (y1, x1, y2, x2) int32 with exclusive ends,
masks bool [height, width, N].
"""
import numpy as np
import tensorflow as tf

from maskrcnnlib.model.anchors import anchors_for_config
from maskrcnnlib.model.maskrcnn import build_inference_model, split_inference_model
from maskrcnnlib.molding import mold_input, unmold_detections
from maskrcnnlib.weights import HEAD_LAYERS, load_weights_h5, save_weights_h5


class Detector:
    """An inference model and the config it was built from.

    devices: with two or more (e.g. every visible GPU), each batch is split among
    them (tf.distribute.MirroredStrategy), a share of its images per device; every
    image's result is the one a single device gives.
    compiled: run the dense part (backbone, FPN, RPN) compiled by XLA, with the large
    3x3 convs of the backbone, FPN and RPN by Winograd (model.winograd). Results equal the
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
        self._dense = self._heads = None
        self._largest_batch = 0
        if self.compiled:
            dense, self._heads, self._sources = split_inference_model(self.model)
            self._dense = tf.function(lambda image: dense(image, training=False),
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
        outputs = self._run(*(tf.constant(x) for x in inputs))
        return [np.asarray(o)[:count] for o in outputs], molded, windows

    def detect(self, images):
        """Per image a dict: rois [N, 4], class_ids [N], scores [N], masks [H, W, N]."""
        outputs, molded, windows = self.raw(images)
        detections, masks = outputs[0], outputs[1]
        results = []
        for i, image in enumerate(images):
            boxes, class_ids, scores, full_masks = unmold_detections(
                detections[i], masks[i], np.asarray(image).shape, molded[i].shape,
                windows[i])
            results.append({"rois": boxes, "class_ids": class_ids, "scores": scores,
                            "masks": full_masks})
        return results
