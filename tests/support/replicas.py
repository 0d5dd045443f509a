"""One short training on N replicas of a CPU split into logical devices, run as its
own process (logical devices must be set before TensorFlow starts):

    python tests/support/replicas.py REPLICAS ACCUMULATION IMAGES_PER_GPU STEPS \
        PRECISION SCENES INITIAL.h5 OUT.npz

Trains a small model (frozen batch normalization, tests/support/models.py) from the
weights in INITIAL.h5 (written first when missing) on SCENES "varied" (4 shapes scenes)
or "same" (one scene 4 times) with seed 1, and saves its weights before ("initial:" + name -> array) and after,
its losses, the weights' dtypes
and the model's dtype policy into OUT.npz.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def main(replicas, accumulation, images_per_gpu, steps, precision, kind, initial, out):
    from maskrcnnlib import distribute

    devices = distribute.split_cpu(2)[:replicas]
    import numpy as np
    import tensorflow as tf

    from maskrcnnlib.dataset.directory import ArrayDataset
    from maskrcnnlib.train import _build_trainer, replica_datasets
    from maskrcnnlib.model.training import make_optimizer
    from maskrcnnlib.model.weights import load_weights_h5, save_weights_h5
    from support.models import small_config
    from support.shapes import shapes_scene

    tf.config.experimental.enable_op_determinism()
    config = small_config()
    config.train_bn = False
    config.images_per_gpu, config.accumulation_steps = images_per_gpu, accumulation
    config.precision = precision
    config.validate()
    rng = np.random.default_rng(7)
    varied = kind == "varied"
    scenes = [shapes_scene(rng, size=128, count=(2, 4), radius=(8, 16))
              for _ in range(4 if varied else 1)] * (1 if varied else 4)

    scenes = ArrayDataset(scenes, classes=["square", "disk"])

    placement = distribute.Placement(distribute.strategy_for_devices(devices), replicas,
                                     "test", devices=devices)
    with placement.strategy.scope():
        trainer = _build_trainer(config, 1, placement)
        if not os.path.exists(initial):
            save_weights_h5(trainer, initial)
        load_weights_h5(trainer, initial)
        trainer.compile(optimizer=make_optimizer(config), jit_compile=False)
    dataset = replica_datasets(placement.strategy, scenes, config, 1, False, shuffle=False)
    before = {"initial:" + v.path: np.asarray(v.numpy(), dtype=np.float64)
              for v in trainer.weights}
    history = trainer.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0)
    weights = {v.path: np.asarray(v.numpy(), dtype=np.float64) for v in trainer.weights}
    np.savez(out, loss=np.asarray(history.history["loss"]),
             dtypes=np.asarray(sorted({str(v.dtype) for v in trainer.weights})),
             policy=np.asarray(trainer.dtype_policy.name), **weights, **before)


if __name__ == "__main__":
    args = sys.argv[1:]
    main(int(args[0]), int(args[1]), int(args[2]), int(args[3]), *args[4:])
