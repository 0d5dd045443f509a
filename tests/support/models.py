"""Settings of the small models the tests train (ResNet-18, 128x128 shapes)."""
from maskrcnnlib.config import Config


def small_config():
    return Config(num_classes=3, class_names=["square", "disk"], backbone="resnet18",
                  image_min_dim=128, image_max_dim=128, rpn_anchor_scales=[8, 16, 32, 64, 128],
                  train_rois_per_image=32, rpn_train_anchors_per_image=64,
                  post_nms_rois_training=200, post_nms_rois_inference=100,
                  pre_nms_limit=1000, max_gt_instances=10, detection_min_confidence=0.5,
                  fpn_classif_fc_layers_size=256, top_down_pyramid_size=64,
                  images_per_gpu=2, learning_rate=0.01, train_bn=None).validate()


def train_until(config, scenes, seed, target_ap50, rounds, steps_per_round=50):
    """Train from scratch on scenes [(image, masks, class_ids)] until mask AP50 on them
    reaches target_ap50 or `rounds` rounds of steps_per_round steps are done.

    Returns (detector holding the trained weights, [AP50 after each round]).
    """
    import keras
    import numpy as np

    from maskrcnnlib.dataset.pipeline import prepare_sample, training_dataset
    from maskrcnnlib.evaluate import ImageInstances, evaluate
    from maskrcnnlib.model.inference import Detector
    from maskrcnnlib.model.training import MaskRCNNTrainer, make_optimizer

    import tensorflow as tf

    # the same model on every run (on one kind of CPU): without it, thread timing
    # changes float sums and the tests would see a different model each time
    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(seed)
    samples = [prepare_sample(image, masks, ids, config, i)
               for i, (image, masks, ids) in enumerate(scenes)]
    order = np.random.default_rng(seed)

    def shuffled():
        for i in order.permutation(len(samples)):
            yield samples[i]

    trainer = MaskRCNNTrainer(config, seed=seed)
    trainer.compile(optimizer=make_optimizer(config))
    detector = Detector(config)
    references = [ImageInstances(masks, ids) for _, masks, ids in scenes]
    dataset = training_dataset(shuffled, config, seed=seed)
    history = []
    for _ in range(rounds):
        losses = trainer.fit(dataset, epochs=1, steps_per_epoch=steps_per_round, verbose=0)
        if not np.isfinite(losses.history["loss"][-1]):
            raise AssertionError("the loss became {}".format(losses.history["loss"][-1]))
        detector.copy_weights_from(trainer)
        results = detector.detect([image for image, _, _ in scenes])
        predictions = [ImageInstances(r["masks"], r["class_ids"], r["scores"])
                       for r in results]
        history.append(evaluate(predictions, references)["AP50"])
        if history[-1] >= target_ap50:
            break
    return detector, history
