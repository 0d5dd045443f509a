"""The private Keras / TensorFlow names in maskrcnnlib.model.compat still exist and are
still called by Keras; after an upgrade, these tests name the one that has gone.

An overridden private method that Keras renamed fails nothing by itself (the override
is simply never called), so the overrides are checked by watching Keras call them.
"""
import inspect
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import ROOT
from maskrcnnlib.model import compat


def require(owner, name, parameters=()):
    """Fail naming owner.name when it is gone or lost one of `parameters`."""
    where = "{}.{}".format(getattr(owner, "__name__", type(owner).__name__), name)
    hint = " (private name used by maskrcnnlib/model/compat.py, checked on {})".format(
        compat.CHECKED_ON)
    assert hasattr(owner, name), "{} no longer exists{}".format(where, hint)
    if parameters:
        found = inspect.signature(getattr(owner, name)).parameters
        missing = [p for p in parameters if p not in found]
        assert not missing, "{} lost its parameters {}{}".format(where, missing, hint)


def model_built_under_a_strategy():
    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
        return keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])


def functional_model():
    inputs = keras.Input((1,))
    return keras.Model(inputs, keras.layers.Dense(1)(inputs))


@pytest.mark.parametrize("owner,name,parameters", [
    (lambda: keras.Model, "_maybe_symbolic_build", ("iterator", "data_batch")),
    (lambda: keras.optimizers.SGD, "_all_reduce_sum_gradients", ("grads_and_vars",)),
    (model_built_under_a_strategy, "_distribute_strategy", ()),
    (lambda: tf.distribute.get_strategy().extended, "_in_multi_worker_mode", ()),
    (functional_model, "_run_through_graph", ("inputs", "operation_fn")),
], ids=["Model._maybe_symbolic_build", "SGD._all_reduce_sum_gradients",
        "Model._distribute_strategy", "StrategyExtended._in_multi_worker_mode",
        "Functional._run_through_graph"])
def test_the_private_name_exists(owner, name, parameters):
    require(owner(), name, parameters)


def test_walk_functional_calls_each_layer_on_its_inputs_in_order():
    """Stand-in values (strings) through a small graph with a nested model and a
    layer taking a list: each layer is asked for once, with its inputs' values."""
    inner_input = keras.Input((2,))
    inner = keras.Model(inner_input, keras.layers.Dense(2, name="d2")(inner_input),
                        name="inner")
    x = keras.Input((2,))
    a = keras.layers.Dense(2, name="d1")(x)
    out = keras.layers.Add(name="add")([inner(a), a])
    model = keras.Model(x, out)
    calls = []

    def operation(layer):
        def run(*args, **kwargs):
            calls.append((layer.name, args[0]))
            if isinstance(layer, keras.Model):
                return compat.walk_functional(layer, args, operation)
            return "{}({})".format(layer.name, args[0])
        return run

    assert compat.walk_functional(model, ["x"], operation) == "add(['d2(d1(x))', 'd1(x)'])"
    assert [name for name, _ in calls] == ["d1", "inner", "d2", "add"]


def test_keras_builds_on_the_batch_our_hook_gives(monkeypatch):
    """fit() under a strategy calls _maybe_symbolic_build with its epoch iterator,
    whose (first step, last step, batches) triples first_replica_batch unpacks."""
    seen = []
    original = compat.first_replica_batch

    def spy(strategy, epoch_iterator):
        seen.append(original(strategy, epoch_iterator))
        return seen[-1]

    monkeypatch.setattr(compat, "first_replica_batch", spy)

    class Model(compat.BuildsOnFirstReplica, keras.Model):
        pass

    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        inputs = keras.Input((3,))
        model = Model(inputs, keras.layers.Dense(1)(inputs))
        model.compile(optimizer="sgd", loss="mse")
    x, y = np.ones((4, 3), "float32"), np.zeros((4, 1), "float32")
    model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    assert len(seen) == 1, "Keras no longer calls _maybe_symbolic_build(iterator=...)"
    batch_x, batch_y = seen[0][:2]
    assert tuple(batch_x.shape) == (2, 3) and tuple(batch_y.shape) == (2, 1)
    assert compat.first_replica_batch(strategy, iter([])) is None


def test_keras_asks_our_optimizer_to_sum_the_gradients(monkeypatch):
    calls = []
    ours = compat.GradientsAlreadySummed._all_reduce_sum_gradients

    def spy(self, grads_and_vars):
        calls.append(len(grads_and_vars))
        return ours(self, grads_and_vars)

    monkeypatch.setattr(compat.GradientsAlreadySummed, "_all_reduce_sum_gradients", spy)

    class Optimizer(compat.GradientsAlreadySummed, keras.optimizers.SGD):
        pass

    variable = keras.Variable(np.ones(2, "float32"))
    Optimizer(learning_rate=0.5).apply_gradients([(tf.constant([1.0, 2.0]), variable)])
    assert calls == [1], "Keras no longer calls _all_reduce_sum_gradients"
    np.testing.assert_allclose(np.asarray(variable), [0.5, 0.0])  # applied once


def test_multi_worker_mode_of_real_strategies():
    """MultiWorkerMirroredStrategy can only start in a fresh process: one worker there."""
    code = ("import tensorflow as tf\n"
            "from maskrcnnlib.model import compat\n"
            "print(compat.is_multi_worker(tf.distribute.MultiWorkerMirroredStrategy()),\n"
            "      compat.is_multi_worker(tf.distribute.MirroredStrategy(['/cpu:0'])))\n")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))
    env.pop("TF_CONFIG", None)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("module", ["keras", "tensorflow"])
def test_versions_are_the_checked_ones(module):
    """A newer minor version than the one checked: read compat.py again, then update
    CHECKED_ON (a patch release is taken as checked)."""
    version = __import__(module).__version__
    assert version.split(".")[:2] == compat.CHECKED_ON[module].split(".")[:2], (
        "{} {} is not the version maskrcnnlib/model/compat.py was checked on ({})".format(
            module, version, compat.CHECKED_ON[module]))
