"""Detection on one device and spread over 2 logical CPU devices, in its own process
(logical devices must be set before TensorFlow starts):

    python tests/support/replicas_detect.py OUT.npz

Detects in 3 images (an odd count: one device gets fewer, a blank one among
them) with a small model of random weights whose class scores vary from image to
image around the score threshold, once on one device and once on two. Saves both
results into OUT.npz.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def main(out):
    from maskrcnnlib import distribute

    devices = distribute.split_cpu(2)
    import keras
    import numpy as np

    from maskrcnnlib.model.inference import Detector
    from support.models import small_config
    from support.shapes import shapes_scene

    keras.utils.set_random_seed(3)
    config = small_config()
    config.detection_min_confidence = 0.4
    rng = np.random.default_rng(5)
    images = [shapes_scene(rng, size=128)[0] for _ in range(3)]
    images[1] = np.zeros_like(images[1])  # a blank image scores otherwise
    one = Detector(config)
    two = Detector(config, devices=devices)
    # flatter class scores, so that images differ in how many detections pass 0.4:
    # the replicas then return different numbers of mask rows
    layer = one.model.get_layer("mrcnn_class_logits")
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel * 0.01, bias])
    path = out + ".weights.h5"
    one.save_weights(path)
    two.load_weights(path)
    arrays = {"replicas": two.replicas}
    for name, detector in (("one", one), ("two", two)):
        for index, result in enumerate(detector.detect(images)):
            for key, value in result.items():
                arrays["{}_{}_{}".format(name, index, key)] = value
    np.savez(out, **arrays)


if __name__ == "__main__":
    main(sys.argv[1])
