"""The network learns: CPU training from scratch on a few synthetic images of two
classes (squares and disks) reaches mask AP50 >= 0.9 on them within a bounded number
of steps. Small settings (ResNet-18, 128x128) keep it to a few minutes."""
import keras
import numpy as np

from maskrcnnlib.dataset.pipeline import prepare_sample, training_dataset
from maskrcnnlib.evaluate import ImageInstances, evaluate
from maskrcnnlib.model.inference import Detector
from maskrcnnlib.model.training import MaskRCNNTrainer, make_optimizer
from maskrcnnlib.weights import copy_weights
from support.models import small_config
from support.shapes import shapes_scene

STEPS_PER_ROUND = 50
MAX_STEPS = 500


def test_training_reaches_mask_ap50_of_0_9():
    keras.utils.set_random_seed(1)
    config = small_config()
    rng = np.random.default_rng(0)
    scenes = [shapes_scene(rng) for _ in range(8)]
    samples = [prepare_sample(image, masks, ids, config, i)
               for i, (image, masks, ids) in enumerate(scenes)]
    order = np.random.default_rng(1)

    def shuffled():
        for i in order.permutation(len(samples)):
            yield samples[i]

    trainer = MaskRCNNTrainer(config, seed=1)
    trainer.compile(optimizer=make_optimizer(config))
    detector = Detector(config)
    references = [ImageInstances(masks, ids) for _, masks, ids in scenes]
    dataset = training_dataset(shuffled, config, seed=1)
    history = []
    for _ in range(MAX_STEPS // STEPS_PER_ROUND):
        losses = trainer.fit(dataset, epochs=1, steps_per_epoch=STEPS_PER_ROUND, verbose=0)
        assert np.isfinite(losses.history["loss"][-1])
        copy_weights(trainer, detector.model)
        results = detector.detect([image for image, _, _ in scenes])
        predictions = [ImageInstances(r["masks"], r["class_ids"], r["scores"])
                       for r in results]
        history.append(evaluate(predictions, references)["AP50"])
        if history[-1] >= 0.9:
            break
    assert history[-1] >= 0.9, f"mask AP50 per {STEPS_PER_ROUND} steps: {history}"
