"""bench_engines.py's worker: one path of the dense part (backbone + FPN + RPN) in a
process of its own, or the one-off export of that dense part.

    python worker_engines.py THREADS ROLE WORKDIR

WORKDIR holds settings.json ({"backbone": ..., "size": ...}), written by the driver,
and what the export role writes there: weights.h5 (parity_weights of the whole
inference model, fixed seed), input.npy (the molded benchmark image, [1, S, S, 3]
float32), reference.npz (the plain graph's dense outputs), dense.onnx, openvino.xml
and .bin, export.json (what converted, how long it took).

Roles:
  export       TensorFlow + tf2onnx + openvino (the engines' venv, which sees the
               project's venv through a .pth file): writes the files above.
  tf-plain     the dense part as a plain TensorFlow graph (tf.function, no XLA).
  tf-xla       the same compiled by XLA (jit_compile), direct convolutions.
  tf-winograd  what Detector runs today on a CPU: Detector(compiled=True)'s dense
               part, XLA + Winograd on transformed kernels (WinogradDense's prepare
               and make included in every call, as detect() pays them).
  detect       Detector(compiled=True).detect() of the benchmark image, the whole
               path (molding, dense part, heads, unmolding); also runs the heads on
               dense outputs another engine made (heads_from), for detection parity.
  openvino     the exported dense part on OpenVINO's CPU plugin, float32.
  onnxruntime  the exported dense part on ONNX Runtime's CPU provider.
  openvino-bf16  OpenVINO with bfloat16 inference (where the CPU has it).
  detect-openvino, detect-onnxruntime
               detect() with that engine's dense part and the current heads in
               TensorFlow (imports both: the engines' venv sees TensorFlow).

Every role answers "load" (builds, compiles, first call: the start-up of a fresh
process, with the time since the process started), "infer" (timed calls) and
"outputs" (saves its dense outputs to an .npz; the detect roles answer their
detections). The roles openvino and onnxruntime never import TensorFlow: their
memory is the engine's own.
"""
import json
import os
import resource
import sys
import time

STARTED = time.time()
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench_common as common  # noqa: E402

THREADS, ROLE, WORKDIR = int(sys.argv[1]), sys.argv[2], sys.argv[3]
common.limit_threads(THREADS)
sys.path.insert(0, common.REPO)
sys.path.insert(0, common.FIXTURES)

import numpy as np  # noqa: E402

with open(os.path.join(WORKDIR, "settings.json")) as _f:
    SETTINGS = json.load(_f)
STATE = {}
ENGINES = ("openvino", "onnxruntime", "openvino-bf16")


def rss_mib():
    """Resident memory now, MiB (/proc/self/status VmRSS)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ------------------------------------------------------------- TensorFlow side

def _tensorflow():
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(THREADS)
    tf.config.threading.set_inter_op_parallelism_threads(THREADS)
    return tf


def config():
    from maskrcnnlib.config import Config

    size = int(SETTINGS["size"])
    return Config(num_classes=common.NUM_CLASSES, backbone=SETTINGS["backbone"],
                  image_min_dim=size, image_max_dim=size, resize_mode="square",
                  detection_min_confidence=common.SCORE_THRESHOLD,
                  detection_max_instances=common.MAX_DETECTIONS).validate()


def detector(compiled):
    """A Detector with the benchmark's fixed-seed weights (weights.h5)."""
    from maskrcnnlib.model.inference import Detector

    made = Detector(config(), compiled=compiled)
    report = made.load_weights(os.path.join(WORKDIR, "weights.h5"))
    if report.missing or report.unused:
        raise RuntimeError("weights did not match: missing {}, unused {}".format(
            report.missing, report.unused))
    return made


def export():
    """Weights, input, reference outputs, ONNX and OpenVINO files of the dense part."""
    import parity_weights

    tf = _tensorflow()
    from maskrcnnlib.model.inference import Detector
    from maskrcnnlib.model.maskrcnn import dense_output_names, split_inference_model
    from maskrcnnlib.model.weights import layer_weights

    info = {}
    plain = Detector(config(), compiled=False)
    layout = [[layer.name, [[name, list(v.shape)] for name, v in layer_weights(layer)]]
              for layer in plain.model.layers if layer_weights(layer)]
    weights = os.path.join(WORKDIR, "weights.h5")
    parity_weights.write_matterport_h5(
        weights, layout, parity_weights.generate_arrays(layout, common.WEIGHT_SEED))
    plain.load_weights(weights)
    image = common.bench_image(int(SETTINGS["size"]))
    molded = plain.mold([image])[0]
    np.save(os.path.join(WORKDIR, "input.npy"), molded)
    dense = split_inference_model(plain.model)[0]
    info["outputs"] = dense_output_names(plain.model)
    spec = tf.TensorSpec(molded.shape, tf.float32, name="input_image")
    function = tf.function(lambda x: dense(x, training=False), input_signature=[spec])
    reference = [np.asarray(v) for v in function(tf.constant(molded))]
    np.savez(os.path.join(WORKDIR, "reference.npz"), *reference)
    info["output_shapes"] = [list(v.shape) for v in reference]

    # ONNX by tf2onnx, from the concrete function (Keras 3 models are not Keras 2
    # models: tf2onnx.convert.from_keras does not read them)
    start = time.perf_counter()
    try:
        import tf2onnx

        onnx_path = os.path.join(WORKDIR, "dense.onnx")
        tf2onnx.convert.from_function(function, input_signature=[spec], opset=17,
                                      output_path=onnx_path)
        info["onnx"] = {"ok": True, "seconds": time.perf_counter() - start,
                        "tf2onnx": tf2onnx.__version__,
                        "mib": os.path.getsize(onnx_path) / 2 ** 20}
    except Exception as error:  # reported: what fails to convert is a finding
        info["onnx"] = {"ok": False, "error": "{}: {}".format(type(error).__name__, error)}

    # OpenVINO: its TensorFlow frontend on the graph frozen to constants (from a
    # SavedModel of the same function it stops at the variables: VarHandleOp "Cannot
    # find requested variable"); its ONNX frontend on dense.onnx, as a second check
    start = time.perf_counter()
    try:
        import openvino as ov
        from tensorflow.python.framework.convert_to_constants import (
            convert_variables_to_constants_v2)

        frozen = convert_variables_to_constants_v2(function.get_concrete_function())
        frozen_path = os.path.join(WORKDIR, "frozen.pb")
        with open(frozen_path, "wb") as f:
            f.write(frozen.graph.as_graph_def().SerializeToString())
        converted = ov.convert_model(frozen_path)
        ov.save_model(converted, os.path.join(WORKDIR, "openvino.xml"),
                      compress_to_fp16=False)
        info["openvino"] = {"ok": True, "seconds": time.perf_counter() - start,
                            "openvino": ov.__version__, "from": "frozen TensorFlow graph"}
    except Exception as error:
        info["openvino"] = {"ok": False, "error": "{}: {}".format(type(error).__name__,
                                                                   error)}
    if info["onnx"]["ok"]:
        start = time.perf_counter()
        try:
            import openvino as ov

            ov.save_model(ov.convert_model(os.path.join(WORKDIR, "dense.onnx")),
                          os.path.join(WORKDIR, "openvino_onnx.xml"),
                          compress_to_fp16=False)
            info["openvino_onnx"] = {"ok": True, "seconds": time.perf_counter() - start}
        except Exception as error:
            info["openvino_onnx"] = {"ok": False, "error": "{}: {}".format(
                type(error).__name__, error)}
    info["tensorflow"] = tf.__version__
    with open(os.path.join(WORKDIR, "export.json"), "w") as f:
        json.dump(info, f, indent=1)
    return info


def _tf_runner():
    """() -> list of numpy outputs of the dense part, for this role."""
    tf = _tensorflow()
    molded = np.load(os.path.join(WORKDIR, "input.npy"))
    if ROLE in ("tf-plain", "tf-xla"):
        from maskrcnnlib.model.maskrcnn import split_inference_model

        dense = split_inference_model(detector(compiled=False).model)[0]
        function = tf.function(lambda x: dense(x, training=False),
                               jit_compile=ROLE == "tf-xla")
        image = tf.constant(molded)
        return lambda: [np.asarray(v) for v in function(image)]
    made = detector(compiled=True)
    STATE["detector"] = made
    if ROLE == "detect":
        image = common.bench_image(int(SETTINGS["size"]))
        STATE["image"] = image
        return lambda: made.detect([image])
    image = tf.constant(molded)

    def run():  # the dense part of Detector.raw, as it runs there
        made._winograd.prepare(molded.shape)
        made._winograd.make()
        return [np.asarray(v) for v in made._dense(image)]
    return run


def heads_from(path):
    """The current detector's heads and unmolding on dense outputs from `path` (.npz
    written by another engine): its detections, for parity with detect()."""
    tf = _tensorflow()
    from maskrcnnlib.model.molding import unmold_detections

    made, image = STATE["detector"], STATE["image"]
    molded, metas, windows, anchors = made.mold([image])
    with np.load(path) as data:
        dense = [tf.constant(data["arr_{}".format(i)]) for i in range(len(data.files))]
    outputs = made._heads(dense + [tf.constant(metas), tf.constant(anchors)],
                          training=False)
    parts = {"dense": dense, "heads": list(outputs)}
    detections, masks = [np.asarray(parts[p][i]) for p, i in made._sources[:2]]
    boxes, class_ids, scores, _ = unmold_detections(
        detections[0], masks[0], molded[0].shape, windows[0], np.asarray(image).shape)
    return common.detections_summary(boxes, class_ids, scores)


# ----------------------------------------------------------------- engine side

def _openvino_runner():
    import openvino as ov

    core = ov.Core()
    STATE["precision"] = str(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    compiled = core.compile_model(
        os.path.join(WORKDIR, "openvino.xml"), "CPU",
        {"INFERENCE_NUM_THREADS": THREADS,
         "INFERENCE_PRECISION_HINT": "bf16" if ROLE.endswith("-bf16") else "f32",
         "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1})
    request = compiled.create_infer_request()
    STATE["version"] = ov.__version__

    def run(molded):
        request.infer({0: molded})
        return [np.array(request.get_output_tensor(i).data)
                for i in range(len(compiled.outputs))]
    return run


def _onnxruntime_runner():
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(os.path.join(WORKDIR, "dense.onnx"), options,
                                   providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    STATE["version"] = ort.__version__
    return lambda molded: session.run(None, {name: molded})


def _engine_runner(engine):
    """() -> the engine's dense outputs of the benchmark's molded input."""
    run = _onnxruntime_runner() if engine == "onnxruntime" else _openvino_runner()
    molded = np.load(os.path.join(WORKDIR, "input.npy"))
    return lambda: run(molded)


def _hybrid_runner(engine):
    """detect() with the engine's dense part: molding, the engine, the current heads
    (a plain TensorFlow graph, as in Detector), unmolding. Builds the whole Keras
    model for its heads (the dense layers' weights are loaded there too, unused)."""
    tf = _tensorflow()
    from maskrcnnlib.model.maskrcnn import split_inference_model
    from maskrcnnlib.model.molding import unmold_detections

    run_dense = _openvino_runner() if engine == "openvino" else _onnxruntime_runner()
    made = detector(compiled=False)
    _, heads, sources = split_inference_model(made.model)
    run_heads = tf.function(lambda inputs: heads(inputs, training=False),
                            reduce_retracing=True)
    image = common.bench_image(int(SETTINGS["size"]))

    def run():
        molded, metas, windows, anchors = made.mold([image])
        dense = [tf.constant(v) for v in run_dense(molded)]
        parts = {"dense": dense,
                 "heads": list(run_heads(dense + [tf.constant(metas), tf.constant(anchors)]))}
        detections, masks = [np.asarray(parts[p][i]) for p, i in sources[:2]]
        boxes, class_ids, scores, full_masks = unmold_detections(
            detections[0], masks[0], molded[0].shape, windows[0], image.shape)
        return [{"rois": boxes, "class_ids": class_ids, "scores": scores,
                 "masks": full_masks}]
    return run


# ---------------------------------------------------------------------- serve

def load():
    imported_s = time.time() - STARTED
    rss_before = rss_mib()
    start = time.perf_counter()
    if ROLE in ENGINES:
        runner = _engine_runner(ROLE)
    elif ROLE.startswith("detect-"):
        runner = _hybrid_runner(ROLE[len("detect-"):])
    else:
        runner = _tf_runner()
    build_s = time.perf_counter() - start
    first_s = common.timed(runner, 1)[0]
    first_result_at = time.time()
    second_s = common.timed(runner, 1)[0]
    STATE["run"] = runner
    return {"first_result_at": first_result_at, "imports_s": imported_s,
            "build_s": build_s, "first_s": first_s, "second_s": second_s,
            "rss_start_mib": rss_before, "peak_rss_mib": peak_rss_mib(),
            "version": STATE.get("version"), "capabilities": STATE.get("precision")}


def infer(n):
    times = common.timed(STATE["run"], n)
    return {"times": times, "rss_mib": rss_mib(), "peak_rss_mib": peak_rss_mib()}


def outputs(path):
    """Save this path's dense outputs (or, for detect, its detections) to `path`."""
    result = STATE["run"]()
    if ROLE.startswith("detect"):
        first = result[0]
        return {"detections": common.detections_summary(
            first["rois"], first["class_ids"], first["scores"])}
    np.savez(path, *[np.asarray(v) for v in result])
    return {"path": path}


if __name__ == "__main__":
    if ROLE == "export":
        print(json.dumps(export(), indent=1))
    else:
        common.serve({"load": load, "infer": infer, "outputs": outputs,
                      "heads_from": heads_from})
