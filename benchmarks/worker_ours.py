"""bench_model.py's and bench_train.py's worker for OUR engine (maskrcnnlib, Keras 3
on TensorFlow).

Run by the driver in our environment: python worker_ours.py THREADS SIZE WEIGHTS_H5
[plain|bfloat16|int8]. With "plain", the detector runs the plain graph
(Detector(compiled=False): no XLA, no Winograd) instead of the CPU default; with
"bfloat16" or "int8", Detector(precision=that). int8 is calibrated on the benchmark
image and made in a temporary folder (MASKRCNN_INT8_CACHE=0): its first call
includes the export and the quantization.
Writes WEIGHTS_H5 (parity_weights, seed 20181, from our model's own layout) if it
does not exist yet, so that matterport's worker can load the very same file.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench_common as common  # noqa: E402

THREADS, SIZE, WEIGHTS = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
PLAIN = sys.argv[4:] == ["plain"]
PRECISION = sys.argv[4] if sys.argv[4:] in (["bfloat16"], ["int8"]) else "float32"
if PRECISION == "int8":
    os.environ["MASKRCNN_INT8_CACHE"] = "0"
common.limit_threads(THREADS)
sys.path.insert(0, common.REPO)
sys.path.insert(0, common.FIXTURES)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(THREADS)
tf.config.threading.set_inter_op_parallelism_threads(THREADS)

import keras  # noqa: E402
import parity_weights  # noqa: E402

from maskrcnnlib.config import Config  # noqa: E402
from maskrcnnlib.model.inference import Detector  # noqa: E402
from maskrcnnlib.model.maskrcnn import dense_output_names  # noqa: E402
from maskrcnnlib.model.molding import unmold_detections  # noqa: E402
from maskrcnnlib.model.weights import layer_weights  # noqa: E402

STATE = {}


def inference_config(cap=common.MAX_DETECTIONS):
    """The matterport fixtures' settings (2018 addon detect config) at SIZE x SIZE,
    at most `cap` detections."""
    return Config(num_classes=common.NUM_CLASSES, backbone="resnet50",
                  image_min_dim=SIZE, image_max_dim=SIZE, resize_mode="square",
                  detection_min_confidence=common.SCORE_THRESHOLD,
                  detection_max_instances=int(cap)).validate()


def model_layout(model):
    """[[layer, [[weight name, shape], ...]], ...] of the layers with weights."""
    return [[layer.name, [[name, list(v.shape)] for name, v in layer_weights(layer)]]
            for layer in model.layers if layer_weights(layer)]


def load(cap=common.MAX_DETECTIONS):
    start = time.perf_counter()
    detector = Detector(inference_config(cap), compiled=False if PLAIN else None,
                        precision=PRECISION)
    if not os.path.exists(WEIGHTS):
        layout = model_layout(detector.model)
        arrays = parity_weights.generate_arrays(layout, common.WEIGHT_SEED)
        parity_weights.write_matterport_h5(WEIGHTS, layout, arrays)
    report = detector.load_weights(WEIGHTS)
    if report.missing or report.unused:
        raise RuntimeError("weights did not match: missing {}, unused {}".format(
            report.missing, report.unused))
    load_s = time.perf_counter() - start
    image = common.bench_image(SIZE)
    STATE.update(detector=detector, image=image)
    calibrated = 0.0
    if PRECISION == "int8":  # export, calibration and quantization: the first call's
        calibrated = time.perf_counter()
        detector.calibrate([image])
        calibrated = time.perf_counter() - calibrated
    warmup = common.timed(lambda: detector.detect([image]), 2)
    warmup[0] += calibrated
    result = detector.detect([image])[0]
    return {"load_s": load_s, "warmup_s": warmup, "weights_loaded": len(report.loaded),
            "compiled": detector.compiled,
            "detections": len(result["class_ids"]),
            "result": common.detections_summary(result["rois"], result["class_ids"],
                                                result["scores"]),
            "versions": {"tensorflow": tf.__version__, "keras": keras.__version__,
                         "numpy": np.__version__}}


def infer(n):
    detector, image = STATE["detector"], STATE["image"]
    results = []
    times = common.timed(lambda: results.append(detector.detect([image])[0]), n)
    return {"times": times, "detections": len(results[-1]["class_ids"]),
            "traces": int(detector._run.experimental_get_tracing_count())}


# ------------------------------------------------------------------ training

def train_config(batch, backbone, anchor_scales=None):
    """The benchmarks' training configuration at SIZE x SIZE: the 2018 addon's
    (64 ROIs and 256 RPN anchors per image, frozen batch norm, full-size masks),
    `batch` images a step on the CPU; anchor_scales None keeps 32..512."""
    config = Config(num_classes=common.NUM_CLASSES, backbone=backbone,
                    image_min_dim=SIZE, image_max_dim=SIZE, resize_mode="square",
                    images_per_gpu=int(batch), gpu_count=0,
                    train_rois_per_image=common.TRAIN_ROIS_PER_IMAGE,
                    rpn_train_anchors_per_image=common.RPN_TRAIN_ANCHORS)
    if anchor_scales:
        config.rpn_anchor_scales = [int(s) for s in anchor_scales]
    return config.validate()


class StepTimes(keras.callbacks.Callback):
    """Wall seconds of each fit() step, from Keras' batch begin to batch end: its
    train function (the next batch from the iterator, train_step, the loss trackers).
    Keras turns the logs into numbers before this callback sees them, which waits
    for the step."""

    def __init__(self):
        super().__init__()
        self.times, self.losses = [], []

    def on_train_batch_begin(self, batch, logs=None):
        self.started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter() - self.started)
        self.losses.append(float(logs["loss"]))


def _parity_weights(trainer, path):
    """Load the parity weights (seed 20181) into the trainer, writing the file from
    its layout when missing; matterport's worker loads the same file."""
    from maskrcnnlib.model.weights import load_weights_h5

    if not os.path.exists(path):
        layout = model_layout(trainer)
        parity_weights.write_matterport_h5(
            path, layout, parity_weights.generate_arrays(layout, common.WEIGHT_SEED))
    report = load_weights_h5(trainer, path)
    if report.missing or report.unused:
        raise RuntimeError("weights did not match: missing {}, unused {}".format(
            report.missing, report.unused))
    return len(report.loaded)


def train_setup(batch=common.TRAIN_BATCH, backbone="resnet50", anchor_scales=None,
                weights=None, deterministic=False, warmup=2, input_batches=8,
                precision=None):
    """Our training step as i.ann.maskrcnn.train runs it (maskrcnnlib/train.py): the
    trainer built and compiled in the CPU placement's strategy scope, all layers
    trainable, fit() over replica_datasets' pipeline. The batch is computed once by
    that pipeline and kept (cache): the timed steps do not include the input
    pipeline, which is timed apart (input_s: seconds a batch, the mean of
    input_batches pulled in a row from the live pipeline, augmentation off).
    weights: the parity .h5 (written if missing), or None for Keras' seeded
    initialisation. deterministic: TF op determinism, as the module with a seed.
    precision: config.precision (None: Config's default, the module's), resolved for
    the CPU as the module does (model.training.build_trainer)."""
    from maskrcnnlib.dataset.augment import augmented_iterator
    from maskrcnnlib.dataset.directory import ArrayDataset
    from maskrcnnlib.dataset.pipeline import training_dataset
    from maskrcnnlib.distribute import training_placement
    from maskrcnnlib.model.training import (build_trainer, compile_trainer,
                                            set_trainable_stage)
    from maskrcnnlib.train import replica_datasets

    start = time.perf_counter()
    seed = common.TRAIN_SEED
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    config = train_config(batch, backbone, anchor_scales)
    if precision:
        config.precision = precision
    data = ArrayDataset(common.train_scenes(SIZE, count=config.images_per_gpu))
    strategy = training_placement(config.gpu_count).strategy
    with strategy.scope():
        trainer = build_trainer(config, seed=seed, on_gpu=False)
    loaded = _parity_weights(trainer, weights) if weights else 0
    set_trainable_stage(trainer, "all")
    with strategy.scope():
        compile_trainer(trainer, config.learning_rate)

    def kept_batch(context):  # replica_datasets' pipeline, its one batch kept
        samples = augmented_iterator(data, config, seed=seed, augment=False, shuffle=False)
        return training_dataset(samples, config, batch_size=config.images_per_gpu,
                                seed=seed, repeat=False).cache().repeat()

    dataset = strategy.distribute_datasets_from_function(kept_batch)
    timer = StepTimes()

    def fit(steps):
        """fit() for `steps` steps: ([seconds of each step], last loss)."""
        done = len(timer.times)
        trainer.fit(dataset, epochs=1, steps_per_epoch=int(steps), callbacks=[timer],
                    verbose=0)
        return timer.times[done:], timer.losses[-1]

    STATE.update(fit=fit, trainer=trainer, one_step=lambda: fit(1))
    setup_s = time.perf_counter() - start
    warm, _ = fit(warmup)
    live = iter(replica_datasets(strategy, data, config, seed, augment=False))
    next(live)
    input_s = sum(common.timed(lambda: next(live), input_batches)) / input_batches
    return {"setup_s": setup_s, "warmup_s": warm, "input_s": input_s,
            "weights_loaded": loaded, "precision": config.precision, "policy": trainer.precision_policy,
            "trainable_variables": len(trainer.trainable_variables),
            "gt_instances": [len(data.load(i)[2]) for i in range(len(data))],
            "versions": {"tensorflow": tf.__version__, "keras": keras.__version__,
                         "numpy": np.__version__}}


def train(n):
    times, loss = STATE["fit"](n)
    return {"times": times, "loss": loss}


def train_profile():
    """TF op statistics of two training steps (forward, backward, update)."""
    return {"ops": op_statistics(STATE["one_step"])}


# ------------------------------------------------------------------- profile

# Cumulative prefixes of the inference graph: (stage, layer names whose outputs
# end the prefix). A stage's time is its prefix's time minus the previous one's.
PREFIXES = [
    ("backbone+FPN", ["fpn_p2", "fpn_p3", "fpn_p4", "fpn_p5", "fpn_p6"]),
    ("RPN heads", ["rpn_class", "rpn_bbox"]),
    ("proposals (top-k, deltas, NMS)", ["ROI"]),
    ("ROI align (classifier)", ["roi_align_classifier"]),
    ("classifier head", ["mrcnn_class", "mrcnn_bbox"]),
    ("detection layer", ["mrcnn_detection"]),
    ("ROI align (mask)", ["roi_align_mask"]),
    ("mask head", ["mrcnn_mask"]),
]


def _prefix_runner(detector, names):
    """A compiled function (images, metas, anchors) -> the outputs of layers `names`.

    For a compiled detector (the CPU default) the prefix runs as detect does: the
    dense part (backbone, FPN, RPN) under XLA, the rest of the prefix as a graph.
    """
    model = detector.model
    outputs = [model.get_layer(name).output for name in names]
    if not detector.compiled:
        prefix = keras.Model(model.inputs, outputs)

        @tf.function(reduce_retracing=True)
        def run(images, metas, anchors):
            return prefix([images, metas, anchors], training=False)

        return run
    image, image_meta, anchors_input = model.inputs
    dense_names = dense_output_names(model)
    dense_tensors = [model.get_layer(n).output for n in dense_names]
    dense = tf.function(keras.Model(image, dense_tensors), jit_compile=True)
    if set(names) <= set(dense_names):
        wanted = [dense_names.index(n) for n in names]

        @tf.function
        def run_dense(images, metas, anchors):
            values = dense(images)
            return [values[i] for i in wanted]

        return run_dense
    rest = keras.Model(dense_tensors + [image_meta, anchors_input], outputs)

    @tf.function
    def run(images, metas, anchors):
        return rest(list(dense(images)) + [metas, anchors], training=False)

    return run


def profile(n=5):
    """Wall time of each inference stage (ms), and TF's op statistics.

    Graph stages: the fastest of n runs of each cumulative prefix, minus the
    previous prefix's (the prefixes alternate, so a busy machine hits them alike);
    numpy stages: median of n runs.
    """
    detector, image = STATE["detector"], STATE["image"]
    molded, metas, windows, anchors = detector.mold([image])
    inputs = (tf.constant(molded), tf.constant(metas), tf.constant(anchors))
    runners = [(stage, _prefix_runner(detector, names)) for stage, names in PREFIXES]
    samples = {stage: [] for stage, _ in PREFIXES}
    for _ in range(2):  # trace and warm every prefix
        for _, run in runners:
            [np.asarray(o) for o in run(*inputs)]
    for _ in range(int(n)):  # prefixes alternate, so drift hits them alike
        for stage, run in runners:
            start = time.perf_counter()
            [np.asarray(o) for o in run(*inputs)]
            samples[stage].append(time.perf_counter() - start)
    outputs, _, _ = detector.raw([image])
    rois = dict(runners)["proposals (top-k, deltas, NMS)"](*inputs)
    rois = np.asarray(rois[0] if isinstance(rois, (list, tuple)) else rois)
    stages = [("molding (numpy: resize, pad, anchors)",
               common.timed(lambda: detector.mold([image]), n))]
    previous = 0.0
    for stage, _ in PREFIXES:
        cumulative = float(np.min(samples[stage]))  # least disturbed run of each prefix
        stages.append((stage, cumulative - previous))
        previous = cumulative
    stages.append(("unmolding (numpy: boxes, 28x28 masks pasted)", common.timed(
        lambda: unmold_detections(outputs[0][0], outputs[1][0], molded[0].shape,
                                  windows[0], image.shape), n)))
    stages = [(s, float(np.median(t)) if isinstance(t, list) else t) for s, t in stages]
    whole = common.timed(lambda: detector.detect([image]), n)
    ops = op_statistics(lambda: detector.detect([image]))
    return {"stages_ms": [[s, 1000 * t] for s, t in stages],
            "graph_ms": 1000 * previous, "detect_ms": 1000 * float(np.median(whole)),
            "detections": int(np.sum(outputs[0][0][:, 4] > 0)),
            "proposals": int(np.sum(np.any(rois[0] != 0, axis=-1))),
            "traces": int(detector._run.experimental_get_tracing_count()),
            "ops": ops}


# Layer name prefixes of each stage (TF op names are "mask_rcnn_1/<layer>_1/...").
STAGE_LAYERS = [
    ("backbone", ("conv1", "bn_conv1", "res", "bn", "zero_padding", "max_pooling",
                  "activation", "add")),
    ("FPN", ("fpn_",)),
    ("RPN heads", ("rpn_",)),
    ("proposals", ("ROI",)),
    ("ROI align (classifier)", ("valid_rois", "roi_align_classifier")),
    ("classifier head", ("mrcnn_class", "mrcnn_bbox", "pool_squeeze")),
    ("detection layer", ("mrcnn_detection",)),
    ("ROI align (mask)", ("valid_detections", "roi_align_mask")),
    ("mask head", ("mrcnn_mask",)),
    ("training targets", ("proposal_targets", "anchors")),
    ("losses", ("rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss",
                "mrcnn_mask_loss")),
]


def stage_of(op_name):
    """The stage an op belongs to, from the layer in its name.

    Names look like "mask_rcnn_1/<layer>_1/..." (inference), "<model>/<layer>/..."
    or "gradient_tape/<model>/<layer>/..." (training step: forward and backward).
    """
    parts = op_name.split("/")
    if parts[0] == "gradient_tape":
        parts = parts[1:]
    layer = parts[1] if len(parts) > 1 else parts[0]
    for stage, prefixes in STAGE_LAYERS:
        if layer.startswith(prefixes):
            return stage
    return "other ({})".format(layer)


def op_statistics(fn, runs=2):
    """Self time of TF ops over `runs` calls of fn(), from TF's profiler (or None):
    shares by op type, by stage and the heaviest ops."""
    import collections
    import glob
    import json
    import tempfile

    try:
        from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin
    except ImportError:
        return None
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(runs):
            fn()
        tf.profiler.experimental.stop()
        paths = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
        data, ok = plugin.xspace_to_tools_data(paths, "framework_op_stats", {})
    if not ok:
        return None
    rows = []
    for table in json.loads(data):  # with and without IDLE time: take the longest
        cols = [c["id"] for c in table["cols"]]
        found = [dict(zip(cols, [x["v"] if x else None for x in r["c"]]))
                 for r in table["rows"]]
        found = [r for r in found if r["type"] != "IDLE"]
        rows = found if len(found) > len(rows) else rows
    if not rows:
        return None
    total = sum(r["total_self_time"] for r in rows) or 1.0
    by_type = collections.Counter()
    for r in rows:
        by_type[r["type"]] += r["total_self_time"]
    by_stage = collections.Counter()
    for r in rows:
        by_stage[stage_of(r["operation"])] += r["total_self_time"]
    top = sorted(rows, key=lambda r: -r["total_self_time"])[:15]
    return {"by_type": [[k, 100.0 * v / total] for k, v in by_type.most_common(12)],
            "by_stage": [[k, 100.0 * v / total] for k, v in by_stage.most_common()],
            "top_ops": [[r["type"], r["operation"], 100.0 * r["total_self_time"] / total]
                        for r in top]}


if __name__ == "__main__":
    common.serve({"load": load, "infer": infer, "train_setup": train_setup,
                  "train": train, "profile": profile,
                  "train_profile": train_profile})
