"""Every private Keras / TensorFlow name maskrcnnlib uses, in one place.

Public APIs cannot do these few things; each wrapper says why it needs the private
name. Checked on Keras 3.15.1 with TensorFlow 2.21.0 (requirements.txt: keras==3.15.*,
tensorflow-cpu==2.21.*). A private name can vanish or change meaning in any release:
tests/unit/test_compat.py checks each one, and names it when it has gone. An
overridden private method is the quiet case: if Keras renames it, the override is
never called and nothing fails, so the test checks that Keras still calls it.
"""
import tensorflow as tf

CHECKED_ON = {"keras": "3.15.1", "tensorflow": "2.21.0"}


class BuildsOnFirstReplica:
    """Mixin for a keras.Model trained under tf.distribute (list it before keras.Model).

    Before the first step, Keras's TensorFlow trainer builds the metrics and the
    optimizer on one batch (private `_maybe_symbolic_build(iterator=...)`), which it
    averages over the replicas; that fails when the replicas' batches have different
    shapes, as ours do (ground truth is padded per batch). Here the build uses the
    first replica's batch instead. Reads the private `_distribute_strategy` (the
    strategy the model was built under, or None: the public `distribute_strategy`
    falls back to the current one, and Keras skips the early build on None).
    Checked on Keras 3.15.1 / TensorFlow 2.21.0.
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if iterator is not None and data_batch is None and strategy is not None:
            data_batch = first_replica_batch(strategy, iterator)
        return super()._maybe_symbolic_build(data_batch=data_batch)


def first_replica_batch(strategy, epoch_iterator):
    """The first replica's part of the first batch of a Keras epoch iterator, or None.

    Keras's TensorFlow epoch iterator yields (first step, last step, iterator over
    distributed batches) triples: a private layout (Keras 3.15.1). Values that are not
    tf.distribute.DistributedValues are returned as they are.
    """
    local = strategy.experimental_local_results
    for _, _, batches in epoch_iterator:
        return tf.nest.map_structure(
            lambda x: local(x)[0] if isinstance(x, tf.distribute.DistributedValues) else x,
            next(batches))
    return None


class GradientsAlreadySummed:
    """Mixin for a Keras optimizer whose gradients come summed over the replicas
    (list it before the optimizer class).

    Keras's TensorFlow optimizer sums the replicas' gradients in the private
    `_all_reduce_sum_gradients`, after clipping each replica's own. Our train_step sums
    them itself before apply_gradients, so clipping sees the whole batch's gradient;
    this makes Keras's sum a no-op so it does not happen twice.
    Checked on Keras 3.15.1 / TensorFlow 2.21.0.
    """

    def _all_reduce_sum_gradients(self, grads_and_vars):
        return list(grads_and_vars)


def is_multi_worker(strategy):
    """Whether Keras treats `strategy` as multi-worker when it reduces step results.

    Keras then averages a step's results over axis 0 (which a scalar lacks); it decides
    with MultiWorkerMirroredStrategy and the private `extended._in_multi_worker_mode()`
    (more than one worker); this asks the very same, so the two cannot disagree.
    Checked on Keras 3.15.1 / TensorFlow 2.21.0.
    """
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and \
        strategy.extended._in_multi_worker_mode()


def walk_functional(model, inputs, operation_fn):
    """Run a functional Keras model's graph layer by layer on stand-in values: for
    each layer, in order, operation_fn(layer)(*its inputs) gives its outputs; returns
    the model's outputs. model.onnxexport writes the dense part as ONNX this way.

    Keras walks its graph in the private `_run_through_graph(inputs, operation_fn)`
    (Functional.call calls it); no public API hands out the layer calls in order with
    their connections. Checked on Keras 3.15.1 / TensorFlow 2.21.0.
    """
    return model._run_through_graph(inputs, operation_fn=operation_fn)
