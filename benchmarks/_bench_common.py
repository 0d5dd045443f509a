"""Shared by bench_model.py, bench_train.py and their engine workers: the request
loop and the inputs.

Imports only the standard library and numpy, because each worker runs in its own
Python environment (ours, torchvision's, matterport's).

Protocol: the driver writes one JSON object per line on the worker's stdin,
{"cmd": NAME, ...arguments}; the worker answers one JSON line on its stdout,
{"ok": true, ...} or {"ok": false, "error": traceback}. Everything else the
worker or its libraries print goes to stderr (the driver's log file).
"""
import json
import os
import sys
import time
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO, "tests", "fixtures")
SUPPORT = os.path.join(REPO, "tests")

WEIGHT_SEED = 20181  # parity_weights.PARITY_SEED: the matterport fixtures' weights
TRAIN_SEED = 7
NUM_CLASSES = 3  # background + 2, as the matterport parity fixtures
MAX_DETECTIONS = 100
SCORE_THRESHOLD = 0.7
TRAIN_ROIS_PER_IMAGE = 64  # the 2018 addon's TRAIN_ROIS_PER_IMAGE; torchvision gets the same
RPN_TRAIN_ANCHORS = 256
TRAIN_BATCH = 2


def limit_threads(threads):
    """Environment variables that cap the math libraries' thread pools.

    Set before TensorFlow/torch are imported; the workers also set the
    frameworks' own thread counts.
    """
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                 "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ[name] = str(threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def bench_image(size):
    """The synthetic test image, uint8 [size, size, 3] (rows = y).

    parity_weights.synthetic_image drawn at size x size: integer arithmetic only,
    so every engine gets the same bytes.
    """
    sys.path.insert(0, FIXTURES)
    import parity_weights

    return parity_weights.synthetic_image(size, size)


def train_scenes(size, count=TRAIN_BATCH, seed=TRAIN_SEED):
    """`count` training scenes: (image uint8 [size, size, 3], masks bool [size, size, N],
    class ids [N] in 1..2), tests/support/shapes.py scaled to `size` (3 to 6 objects).
    """
    sys.path.insert(0, SUPPORT)
    import numpy as np
    from support.shapes import shapes_scene

    rng = np.random.default_rng(seed)
    radius = (max(4, size // 24), max(8, size // 10))
    return [shapes_scene(rng, size=size, count=(3, 6), radius=radius) for _ in range(count)]


def timed(fn, n):
    """Wall seconds of each of n calls of fn() (fn must return only when done)."""
    times = []
    for _ in range(int(n)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def timed_steps(step, n):
    """A worker's answer to "train": the wall seconds of n calls of step() (a training
    step returning its loss as a number) and the last loss."""
    losses = []
    times = timed(lambda: losses.append(step()), n)
    return {"times": times, "loss": losses[-1]}


def serve(handlers):
    """Answer the driver's requests with handlers[cmd](**arguments) until "quit"."""
    reply = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # library prints must not corrupt the protocol
    sys.stdout = sys.stderr
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        cmd = request.pop("cmd")
        if cmd == "quit":
            break
        try:
            answer = {"ok": True, **(handlers[cmd](**request) or {})}
        except Exception:  # reported to the driver, which stops the run
            answer = {"ok": False, "error": traceback.format_exc()}
        reply.write(json.dumps(answer) + "\n")
        reply.flush()


def detections_summary(rois, class_ids, scores):
    """JSON-able detections: boxes (y1, x1, y2, x2) pixels, class ids, scores."""
    return {"rois": [[int(v) for v in box] for box in rois],
            "class_ids": [int(v) for v in class_ids],
            "scores": [float(v) for v in scores]}
