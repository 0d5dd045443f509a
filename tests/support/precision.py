"""Mask AP of a trained model detected in one precision: the reduced-precision
inference tests compare it with float32's (issue 20: within 0.01)."""
import numpy as np

from support.shapes import shapes_scene


def unseen_scenes(count=40, seed=77):
    """Scenes the shapes model never saw: 40 hold 112 objects, so that one object
    crossing an IoU threshold moves an AP by less than 0.01."""
    rng = np.random.default_rng(seed)
    return [shapes_scene(rng, class_colors=True) for _ in range(count)]


def mask_ap(weights, precision, scenes, calibration=None):
    """(figures of maskrcnnlib.evaluate, the Detector) for `weights` detected in
    `precision` over scenes [(image, masks, class_ids)], 8 images per batch;
    calibration: images an int8 detector calibrates on first."""
    from maskrcnnlib.evaluate import ImageInstances, evaluate
    from maskrcnnlib.modelcard import config_for_weights
    from maskrcnnlib.model.inference import Detector

    detector = Detector(config_for_weights(str(weights)), precision=precision)
    detector.load_weights(str(weights))
    if calibration is not None:
        detector.calibrate(calibration)
    results = []
    for start in range(0, len(scenes), 8):
        results += detector.detect([image for image, _, _ in scenes[start:start + 8]])
    assert all(r["scores"].dtype == np.float32 for r in results)
    figures = evaluate(
        [ImageInstances(r["masks"], r["class_ids"], r["scores"]) for r in results],
        [ImageInstances(masks, ids) for _, masks, ids in scenes])
    return figures, detector
