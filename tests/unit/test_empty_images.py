"""Images without objects train: negative chips and empty random windows give a batch
whose every image has no instance; the step must run (it failed in the training
graph's argmax over an empty instance axis) and give finite losses."""
import numpy as np

from support.models import small_config


def test_a_batch_without_any_object_trains():
    import keras

    from maskrcnnlib.dataset.pipeline import prepare_sample, training_dataset
    from maskrcnnlib.model.training import MaskRCNNTrainer, make_optimizer

    config = small_config()
    rng = np.random.default_rng(0)
    empty = [prepare_sample(rng.integers(0, 255, (128, 128, 3)).astype(np.uint8),
                            np.zeros((128, 128, 0), bool), [], config, i) for i in range(2)]
    batch = next(iter(training_dataset(lambda: iter(empty), config, seed=1, repeat=False)))
    assert batch["gt_class_ids"].shape == (2, 1)  # one padding row each
    assert not np.any(batch["gt_class_ids"]) and not np.any(batch["gt_masks"])
    keras.utils.set_random_seed(1)
    trainer = MaskRCNNTrainer(config, seed=1)
    trainer.compile(optimizer=make_optimizer(config))
    history = trainer.fit(training_dataset(lambda: iter(empty), config, seed=1), epochs=1,
                          steps_per_epoch=2, verbose=0)
    assert all(np.isfinite(values[-1]) for values in history.history.values()), \
        history.history
