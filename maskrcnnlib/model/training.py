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

Precision (config.precision, resolved by compute_precision): "float32"; "mixed"
(bfloat16 on the CPU, float16 with loss scaling on a GPU; float32 weights either
way); "auto", the default: bfloat16 on a CPU with native bfloat16 arithmetic
(AVX512_BF16 or AMX-BF16: convolutions and matrix products about a quarter faster,
the same accuracy in our tests), float32 on other CPUs (there bfloat16 is emulated and
slower) and on GPUs.
"""
import contextlib

import keras
import numpy as np
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


# CPU flags (Linux /proc/cpuinfo names) of native bfloat16 arithmetic in oneDNN
BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(path="/proc/cpuinfo"):
    """The CPU's feature flags (a set of /proc/cpuinfo names; empty where unreadable)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def compute_precision(precision, on_gpu, flags=None):
    """(Keras dtype policy name, reason) for config.precision on this machine.

    "float32" -> float32; "mixed" -> mixed_float16 on a GPU, mixed_bfloat16 on the
    CPU; "auto" -> mixed_bfloat16 on a CPU whose flags (cpu_flags() unless given)
    include AVX512_BF16 or AMX-BF16, float32 elsewhere (GPUs included).
    """
    if precision == "float32":
        return "float32", "precision=float32"
    if precision == "mixed":
        return ("mixed_float16" if on_gpu else "mixed_bfloat16"), "precision=mixed"
    if precision != "auto":
        raise ValueError("unknown precision {!r}".format(precision))
    if on_gpu:
        return "float32", "precision=auto on a GPU"
    native = sorted(set(BFLOAT16_CPU_FLAGS) & (cpu_flags() if flags is None else set(flags)))
    if native:
        return "mixed_bfloat16", "precision=auto: the CPU has {}".format(" and ".join(native))
    return "float32", "precision=auto: the CPU has no native bfloat16 (AVX512_BF16, AMX-BF16)"


@contextlib.contextmanager
def dtype_policy(name):
    """Keras' global dtype policy set to `name` while layers are built, then restored."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def build_trainer(config, seed=None, on_gpu=False, flags=None):
    """The MaskRCNNTrainer of config, its layers computing in the dtype policy that
    compute_precision picks (weights stay float32); the trainer's precision_policy
    and precision_reason say which and why. Call it inside the strategy's scope."""
    policy, reason = compute_precision(config.precision, on_gpu, flags)
    with dtype_policy(policy):
        trainer = MaskRCNNTrainer(config, seed=seed)
    trainer.precision_policy, trainer.precision_reason = policy, reason
    return trainer


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

    def _decayed(self, variable):
        """Whether matterport's L2 term covers the variable (kernels and biases)."""
        return not variable.name.endswith(("gamma", "beta"))

    def weight_decay(self):
        """matterport's L2 term over trainable kernels and biases."""
        decay = self.mrcnn_config.weight_decay
        # sum(w**2) / size(w), the sum as TensorFlow's one-op L2Loss (half of it)
        terms = [tf.nn.l2_loss(tf.cast(v, "float32")) * (2.0 / float(np.prod(v.shape)))
                 for v in self.trainable_variables if self._decayed(v)]
        return decay * ops.sum(ops.stack(terms)) if terms else ops.zeros(())

    def _add_decay_gradient(self, gradients, variables, share):
        """The gradients plus those of share x the L2 term, written out: for a decayed
        w of n entries, d/dw (share * decay * sum(w**2) / n) = (2 * share * decay / n) w,
        times the loss scale when the loss is scaled. Two element-wise ops a variable
        instead of the tape's square, sum and their gradients (the same math)."""
        scale = self.optimizer.scale_loss(ops.convert_to_tensor(
            2.0 * share * self.mrcnn_config.weight_decay, "float32"))
        out = []
        for gradient, variable in zip(gradients, variables):
            if self._decayed(variable):
                term = (scale / float(np.prod(variable.shape))) * ops.cast(variable, "float32")
                gradient = term if gradient is None else \
                    gradient + ops.cast(term, gradient.dtype)
            out.append(gradient)
        return out

    @staticmethod
    def _replicas():
        """(replica context or None, replicas in sync)."""
        context = tf.distribute.get_replica_context()
        return context, context.num_replicas_in_sync if context is not None else 1

    def train_step(self, data):
        context, replicas = self._replicas()
        with tf.GradientTape() as tape:
            losses, total = self._objective(data, training=True)
            scaled = self.optimizer.scale_loss(total)
        variables = self.trainable_variables
        gradients = tape.gradient(scaled, variables)
        # every replica adds the same decay term: a share of it each, its gradient
        # added outside the tape; its value is reported (not differentiated)
        gradients = self._add_decay_gradient(gradients, variables, 1.0 / replicas)
        decay = self.weight_decay()
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


def _plain_variable(variable):
    """The tf.Variable of a one-device variable (Keras' or TensorFlow's), or None for
    a distributed one (mirrored over replicas)."""
    if isinstance(variable, keras.Variable):
        variable = variable.value
    if isinstance(variable, tf.Variable) and hasattr(variable, "handle") and not hasattr(
            variable, "_distributed_container") and not hasattr(
            variable.handle, "_distributed_container"):
        return variable
    return None


class _SummedSGD(compat.GradientsAlreadySummed, keras.optimizers.SGD):
    """SGD for gradients that train_step has already summed over the replicas, so
    that clipping and accumulation see the whole batch's gradient.

    The same update as Keras' SGD in fewer ops a variable (a ResNet-50 has some 320;
    at batch 1 their per-op costs were a tenth of a CPU step): the norm for clipping
    from one L2Loss op, and on one-device variables the momentum step as TensorFlow's
    fused ResourceApplyKerasMomentum (m = momentum * m - lr * g; w += m, Keras' own
    formula). Distributed variables and sparse gradients take Keras' path."""

    def _clip_by_norm(self, values, axes=None):
        if isinstance(values, tf.IndexedSlices) or axes is not None:
            return super()._clip_by_norm(values, axes)
        norm = tf.sqrt(2.0 * tf.cast(tf.nn.l2_loss(values), "float32"))
        clip = tf.constant(float(self.clipnorm), "float32")
        return values * tf.cast(clip / tf.maximum(norm, clip), values.dtype)

    def update_step(self, gradient, variable, learning_rate):
        target = _plain_variable(variable)
        slot = None if self.momentum == 0 or self.nesterov or target is None else \
            _plain_variable(self.momentums[self._get_variable_index(variable)])
        if slot is None or isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        dtype = target.dtype
        tf.raw_ops.ResourceApplyKerasMomentum(
            var=target.handle, accum=slot.handle, lr=tf.cast(learning_rate, dtype),
            grad=tf.cast(gradient, dtype), momentum=tf.cast(self.momentum, dtype),
            use_locking=False, use_nesterov=False)


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
