"""The network learns: CPU training from scratch on a few synthetic images of two
classes (squares and disks) reaches mask AP50 >= 0.9 on them within a bounded number
of steps. Small settings (ResNet-18, 128x128) keep it to a few minutes."""
import numpy as np

from support.models import small_config, train_until
from support.shapes import shapes_scene

STEPS_PER_ROUND = 50
MAX_STEPS = 500


def test_training_reaches_mask_ap50_of_0_9():
    rng = np.random.default_rng(0)
    scenes = [shapes_scene(rng) for _ in range(8)]
    _, history = train_until(small_config(), scenes, seed=1, target_ap50=0.9,
                             rounds=MAX_STEPS // STEPS_PER_ROUND,
                             steps_per_round=STEPS_PER_ROUND)
    assert history[-1] >= 0.9, f"mask AP50 per {STEPS_PER_ROUND} steps: {history}"
