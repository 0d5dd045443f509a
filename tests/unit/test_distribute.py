"""tf.distribute without GPUs: replicas on logical CPU devices (issue 7).

The runs that split the CPU happen in their own processes (tests/support/replicas*.py):
logical devices can only be set before TensorFlow starts.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from maskrcnnlib import distribute

SUPPORT = ROOT / "tests" / "support"


def run_support(script, *args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, str(SUPPORT / script), *map(str, args)],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Train runs by name: (replicas, accumulation, images per replica, steps,
    precision, scenes), all from the same initial weights."""
    folder = tmp_path_factory.mktemp("replicas")
    initial = folder / "initial.h5"
    done = {}

    def get(name, *settings):
        if name not in done:
            out = folder / (name + ".npz")
            run_support("replicas.py", *settings, initial, out)
            done[name] = dict(np.load(out))
        return done[name]

    return get


def weights(run, initial=False):
    prefix = "initial:"
    return {k[len(prefix):] if initial else k: v for k, v in run.items()
            if k.startswith(prefix) == initial and k not in ("loss", "dtypes", "policy")}


def largest_difference(first, second, initial=False):
    a, b = weights(first), weights(second, initial)
    assert a.keys() == b.keys()
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


def test_a_step_on_two_replicas_moves_the_weights_as_on_one(runs):
    # global batch 2: one device with 2 images, or 2 devices with 1 image each
    one = runs("one", 1, 1, 2, 1, "float32", "varied")
    two = runs("two", 2, 1, 1, 1, "float32", "varied")
    assert largest_difference(one, one, initial=True) > 1e-3  # the step moved them...
    assert largest_difference(one, two) < 1e-5  # ...and in the same way
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-5)


def test_accumulated_steps_equal_one_larger_batch(runs):
    # the same image 4 times: equal counts per image, so the mean of 2 one-image
    # steps' losses is the loss of one two-image batch
    batch = runs("batch2", 1, 1, 2, 1, "float32", "same")
    accumulated = runs("accumulated", 1, 2, 1, 2, "float32", "same")
    first_only = runs("first_only", 1, 2, 1, 1, "float32", "same")
    assert largest_difference(batch, accumulated) < 1e-5
    # after one of the two micro-steps the weights have not moved yet
    assert largest_difference(batch, first_only) > 1e-3
    assert largest_difference(first_only, first_only, initial=True) == 0


def test_mixed_precision_trains_with_float32_weights(runs):
    mixed = runs("mixed", 1, 1, 2, 2, "mixed", "varied")
    assert str(mixed["policy"]) == "mixed_bfloat16"  # the CPU's; GPUs get float16
    assert list(mixed["dtypes"]) == ["float32"]
    assert np.isfinite(mixed["loss"]).all()
    assert largest_difference(mixed, mixed, initial=True) > 1e-3


def test_detection_spread_over_two_devices_equals_one(tmp_path):
    out = tmp_path / "detections.npz"
    run_support("replicas_detect.py", out)
    found = np.load(out)
    assert int(found["replicas"]) == 2
    counts = {len(found["one_{}_scores".format(i)]) for i in range(3)}
    assert len(counts) > 1  # the replicas' parts have different numbers of detections
    for index in range(3):
        one = {k: found["one_{}_{}".format(index, k)] for k in
               ("rois", "class_ids", "scores", "masks")}
        two = {k: found["two_{}_{}".format(index, k)] for k in one}
        assert len(one["scores"]) > 0
        np.testing.assert_array_equal(two["class_ids"], one["class_ids"])
        np.testing.assert_array_equal(two["rois"], one["rois"])
        np.testing.assert_array_equal(two["masks"], one["masks"])
        np.testing.assert_allclose(two["scores"], one["scores"], rtol=1e-6)


def cluster(task_type="worker", index=0, chief=False, workers=2):
    spec = {"worker": ["127.0.0.1:{}".format(20000 + i) for i in range(workers)]}
    if chief:
        spec["chief"] = ["127.0.0.1:19999"]
    return {"TF_CONFIG": json.dumps({"cluster": spec,
                                     "task": {"type": task_type, "index": index}})}


def test_tf_config_names_the_chief():
    assert distribute.cluster_config({}) is None
    assert distribute.is_chief({})
    assert distribute.is_chief(cluster("worker", 0))
    assert not distribute.is_chief(cluster("worker", 1))
    assert distribute.is_chief(cluster("chief", 0, chief=True))
    assert not distribute.is_chief(cluster("worker", 0, chief=True))
    # one task alone is no cluster
    assert distribute.cluster_config(cluster("worker", 0, workers=1)) is None


@pytest.mark.parametrize("text,words", [
    ("{not json", "not valid JSON"),
    ('{"cluster": {"worker": ["a:1", "b:1"]}}', '"task"'),
    ('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 2}}',
     "not in the cluster"),
    ('{"cluster": {"worker": ["a:1"], "ps": ["b:1"]}, "task": {"type": "worker", '
     '"index": 0}}', "not ps"),
])
def test_bad_tf_config_is_named(text, words):
    with pytest.raises(distribute.DeviceError, match=words):
        distribute.cluster_config({"TF_CONFIG": text})


def test_devices_on_a_machine_without_gpus():
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has GPUs")  # the checks below are for CPU machines
    default = distribute.training_placement(1, environ={})
    assert default.replicas == 1 and "no GPU is visible" in default.description
    assert "gpu_count=0" in distribute.training_placement(0, environ={}).description
    with pytest.raises(distribute.DeviceError, match="gpu_count=2 but no GPU is visible"):
        distribute.training_placement(2, environ={})
    assert distribute.detection_devices() == ["/cpu:0"]
