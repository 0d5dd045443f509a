"""The training model: Keras fit() over the training graph with matterport's objective.

Loss = the five Mask R-CNN losses (weighted by config.loss_weights) + matterport's
weight decay: sum over trainable kernels/biases (not batch-norm gamma/beta) of
weight_decay * sum(w**2) / size(w). SGD with momentum and per-variable gradient
clipping (matterport's clipnorm). The train_step uses tf.GradientTape: training
runs on the TensorFlow backend.

Under tf.distribute (maskrcnnlib.distribute), each replica's losses are its share of
the global batch's losses (maskrcnnlib.model.losses); train_step sums the replicas'
gradients itself, so clipping sees the gradient of the whole batch, and a step on N
replicas moves the weights as one device with the whole batch would. Gradient
accumulation (config.accumulation_steps) averages that many steps' gradients before
the weights move. Mixed precision (config.precision) scales the loss when it runs
in float16.
"""
import keras
import tensorflow as tf
from keras import ops

from maskrcnnlib.model import compat
from maskrcnnlib.model.losses import training_losses
from maskrcnnlib.model.maskrcnn import build_training_graph

LOSS_KEYS = ("rpn_class", "rpn_bbox", "mrcnn_class", "mrcnn_bbox", "mrcnn_mask")

# Training stages of the 2018 addon, as named layer groups.
STAGE_GROUPS = {
    "heads": {"fpn", "rpn", "heads"},
    "5+": {"stage5", "fpn", "rpn", "heads"},
    "4+": {"stage4", "stage5", "fpn", "rpn", "heads"},
    "3+": {"stage3", "stage4", "stage5", "fpn", "rpn", "heads"},
    "all": {"stage1", "stage2", "stage3", "stage4", "stage5", "fpn", "rpn", "heads"},
}


def layer_group(name):
    """The named group of a layer from its matterport name, or None (no weights).

    conv1, bn_conv1 -> stage1; res4b_branch2a, bn4b_branch2a -> stage4;
    fpn_* -> fpn; rpn_model -> rpn; mrcnn_* -> heads.
    """
    if name in ("conv1", "bn_conv1"):
        return "stage1"
    for prefix in ("res", "bn"):
        if name.startswith(prefix) and name[len(prefix):len(prefix) + 1].isdigit():
            return "stage" + name[len(prefix)]
    if name.startswith("fpn_"):
        return "fpn"
    if name == "rpn_model":
        return "rpn"
    if name.startswith("mrcnn_"):
        return "heads"
    return None


def set_trainable_stage(model, stage):
    """Make only the layers of a training stage ("heads", "4+", ..., "all") trainable."""
    if stage not in STAGE_GROUPS:
        raise ValueError("unknown training stage {!r}".format(stage))
    groups = STAGE_GROUPS[stage]
    for layer in model.layers:
        group = layer_group(layer.name)
        if group is not None:
            layer.trainable = group in groups


class MaskRCNNTrainer(compat.BuildsOnFirstReplica, keras.Model):
    """Functional training graph with a train_step computing the named losses.

    Built under tf.distribute, it builds on the first replica's batch (compat).
    """

    def __init__(self, config, seed=None, **kwargs):
        inputs, outputs = build_training_graph(config, seed=seed)
        super().__init__(inputs=inputs, outputs=outputs, name="mask_rcnn_training",
                         **kwargs)
        self.mrcnn_config = config
        self.loss_weights_by_name = {key: float(config.loss_weights[key + "_loss"])
                                     for key in LOSS_KEYS}
        self.loss_trackers = {key: keras.metrics.Mean(name=key) for key in
                              LOSS_KEYS + ("loss", "weight_decay")}

    @property
    def metrics(self):
        return list(self.loss_trackers.values())

    def _objective(self, data, training):
        losses = training_losses(self(data, training=training))
        total = sum(self.loss_weights_by_name[key] * losses[key] for key in LOSS_KEYS)
        return losses, total

    def weight_decay(self):
        """matterport's L2 term over trainable kernels and biases."""
        decay = self.mrcnn_config.weight_decay
        terms = [ops.sum(ops.square(ops.cast(v, "float32"))) / ops.cast(ops.size(v), "float32")
                 for v in self.trainable_variables
                 if not v.name.endswith(("gamma", "beta"))]
        return decay * ops.sum(ops.stack(terms)) if terms else ops.zeros(())

    @staticmethod
    def _replicas():
        """(replica context or None, replicas in sync)."""
        context = tf.distribute.get_replica_context()
        return context, context.num_replicas_in_sync if context is not None else 1

    def train_step(self, data):
        context, replicas = self._replicas()
        with tf.GradientTape() as tape:
            losses, total = self._objective(data, training=True)
            # every replica adds the same decay term: a share of it each
            decay = self.weight_decay()
            share = total + decay / replicas
            scaled = self.optimizer.scale_loss(share)
        variables = self.trainable_variables
        gradients = tape.gradient(scaled, variables)
        pairs = [(g, v) for g, v in zip(gradients, variables) if g is not None]
        if context is not None and replicas > 1:
            summed = context.all_reduce(tf.distribute.ReduceOp.SUM, [g for g, _ in pairs])
            pairs = list(zip(summed, [v for _, v in pairs]))
        self.optimizer.apply_gradients(pairs)
        return self._report(losses, total, decay, replicas)

    def test_step(self, data):
        _, replicas = self._replicas()
        losses, total = self._objective(data, training=False)
        return self._report(losses, total, self.weight_decay(), replicas)

    def _report(self, losses, total, decay, replicas=1):
        """Track the losses of the whole batch: Keras averages the replicas' results,
        so a replica reports its shares (losses, total) times the replica count;
        loss = total + decay (decay is whole on every replica)."""
        scale = float(replicas)
        for key in LOSS_KEYS:
            self.loss_trackers[key].update_state(losses[key] * scale)
        self.loss_trackers["loss"].update_state(total * scale + decay)
        self.loss_trackers["weight_decay"].update_state(decay)
        results = {key: tracker.result() for key, tracker in self.loss_trackers.items()}
        if compat.is_multi_worker(tf.distribute.get_strategy()):
            # Keras averages multi-worker step results over axis 0, which a scalar
            # lacks: give them one (the average comes back as a scalar)
            results = {key: ops.reshape(value, (1,)) for key, value in results.items()}
        return results


class _SummedSGD(compat.GradientsAlreadySummed, keras.optimizers.SGD):
    """SGD for gradients that train_step has already summed over the replicas, so
    that clipping and accumulation see the whole batch's gradient."""


def make_optimizer(config, learning_rate=None):
    """matterport's optimizer: SGD with momentum, each gradient clipped to a norm;
    with config.accumulation_steps > 1 the weights move every that many steps, by
    the mean of their gradients."""
    steps = int(getattr(config, "accumulation_steps", 1) or 1)
    return _SummedSGD(name="SGD",
        learning_rate=config.learning_rate if learning_rate is None else learning_rate,
        momentum=config.learning_momentum, clipnorm=config.gradient_clip_norm,
        gradient_accumulation_steps=steps if steps > 1 else None)


def compile_trainer(trainer, learning_rate=None):
    """Compile the trainer for fit() as i.ann.maskrcnn.train does (call it inside the
    strategy's scope); benchmarks use it too, so they time the module's own step."""
    trainer.compile(optimizer=make_optimizer(trainer.mrcnn_config, learning_rate),
                    jit_compile=False)
    return trainer
