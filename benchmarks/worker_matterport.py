"""bench_model.py's worker for MATTERPORT's engine (its TF2 port, tf_keras).

Run by the driver in matterport's environment (tensorflow 2.21 + tf_keras, see
tests/fixtures/matterport/README.md):
python worker_matterport.py THREADS SIZE WEIGHTS_H5 MRCNN_PATH
matterport's code stays outside the repository: make_matterport_fixtures.py
copies MRCNN_PATH/mrcnn into a temporary folder, patches that copy for tf_keras
and imports it. The weights are the file our worker wrote (same layout).
"""
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench_common as common  # noqa: E402

THREADS, SIZE, WEIGHTS, MRCNN_PATH = (int(sys.argv[1]), int(sys.argv[2]), sys.argv[3],
                                      sys.argv[4])
common.limit_threads(THREADS)
sys.path.insert(0, common.FIXTURES)

import numpy as np  # noqa: E402
import make_matterport_fixtures as fixtures  # noqa: E402
import parity_weights  # noqa: E402

STATE = {}


def load(cap=common.MAX_DETECTIONS):
    start = time.perf_counter()
    tf_keras = fixtures.install_keras_alias()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(THREADS)
    tf.config.threading.set_inter_op_parallelism_threads(THREADS)
    workdir = tempfile.mkdtemp(prefix="bench-matterport-")
    STATE["workdir"] = workdir
    mrcnn, _ = fixtures.load_matterport(MRCNN_PATH, workdir)

    class BenchConfig(mrcnn.config.Config):
        pass

    settings = dict(fixtures.ADDON_DETECT_CONFIG, IMAGE_MIN_DIM=SIZE, IMAGE_MAX_DIM=SIZE,
                    NUM_CLASSES=common.NUM_CLASSES,
                    DETECTION_MIN_CONFIDENCE=common.SCORE_THRESHOLD,
                    DETECTION_MAX_INSTANCES=int(cap))
    for key, value in settings.items():
        setattr(BenchConfig, key, value)
    model = mrcnn.model.MaskRCNN(mode="inference", model_dir=workdir, config=BenchConfig())
    model.keras_model.load_weights(WEIGHTS, by_name=True)
    # every weight equals the array written for it: same layout, same weights as ours
    layout, _ = fixtures.saved_layout(model.keras_model)
    checked = fixtures.check_loaded(model.keras_model, layout,
                                    parity_weights.generate_arrays(layout, common.WEIGHT_SEED))
    load_s = time.perf_counter() - start
    image = common.bench_image(SIZE)
    STATE.update(model=model, image=image)
    warmup = common.timed(lambda: model.detect([image], verbose=0), 2)
    result = model.detect([image], verbose=0)[0]
    return {"load_s": load_s, "warmup_s": warmup, "weights_checked": checked,
            "detections": len(result["class_ids"]),
            "result": common.detections_summary(result["rois"], result["class_ids"],
                                                result["scores"]),
            "versions": {"tensorflow": tf.__version__, "tf_keras": tf_keras.__version__,
                         "numpy": np.__version__}}


def infer(n):
    model, image = STATE["model"], STATE["image"]
    results = []
    times = common.timed(lambda: results.append(model.detect([image], verbose=0)[0]), n)
    return {"times": times, "detections": len(results[-1]["class_ids"])}


def quit_cleanup():
    import shutil

    shutil.rmtree(STATE.get("workdir", ""), ignore_errors=True)


if __name__ == "__main__":
    try:
        common.serve({"load": load, "infer": infer})
    finally:
        quit_cleanup()
