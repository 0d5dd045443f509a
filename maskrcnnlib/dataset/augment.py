"""Random flips and right-angle rotations, and the per-pass sample stream for training.

Pure numpy: augment_sample moves pixels only (no interpolation), so masks stay
exactly aligned with their image. Arrays are [rows (y, down), columns (x, right), ...].
TensorFlow is imported only when a stream is iterated (through pipeline.prepare_sample).
"""
import numpy as np


def augment_sample(image, masks, rng):
    """A random element of the 8 symmetries of the square applied to image and masks.

    image: [H, W(, bands)]; masks: [H, W, N]; rng: a numpy Generator.
    Draws, in this order: left-right flip (p 0.5), up-down flip (p 0.5), then a
    counter-clockwise rotation by k * 90 degrees, k uniform in 0..3 (each of
    the 8 symmetries comes out with probability 1/8). An odd k swaps H and W.
    Returns (image, masks) as new contiguous arrays, dtypes unchanged.
    """
    flip_lr, flip_ud = rng.integers(0, 2, size=2)
    quarter_turns = int(rng.integers(0, 4))

    def move(array):
        if flip_lr:
            array = array[:, ::-1]
        if flip_ud:
            array = array[::-1]
        return np.ascontiguousarray(np.rot90(array, quarter_turns, axes=(0, 1)))

    return move(np.asarray(image)), move(np.asarray(masks))


def _pass_rng(seed, pass_index):
    """The Generator of one pass: a function of (seed, pass number) only."""
    return np.random.default_rng([pass_index, seed])


def augmented_iterator(dataset, config, seed=None, augment=True, shuffle=True):
    """A callable that returns, at each call, an iterator over one pass of `dataset`.

    dataset: anything with len() and load(index) -> (image, masks, class_ids).
    config: the Config given to pipeline.prepare_sample.
    Each call starts the next pass: its Generator is seeded by (seed, pass
    number), so the same seed gives the same sequence of passes (pass 0, 1, ...).
    Per pass: one permutation of the samples (shuffle) and, per sample,
    augment_sample (augment) before prepare_sample (which uses the same
    Generator to subsample instances above config.max_gt_instances). The
    yielded dicts are prepare_sample's; image_meta's image_id is the dataset index.
    seed None draws a random seed once, when this function is called.
    Suited to pipeline.training_dataset(samples=..., repeat=True), which calls
    it once per pass.
    """
    from maskrcnnlib.dataset.pipeline import prepare_sample

    base = int(np.random.SeedSequence().entropy) if seed is None else int(seed)
    base &= 0xFFFFFFFFFFFFFFFF  # SeedSequence takes non-negative integers only
    passes = [0]

    def samples(rng):
        order = rng.permutation(len(dataset)) if shuffle else np.arange(len(dataset))
        for index in order.tolist():
            image, masks, class_ids = dataset.load(index)
            if augment:
                image, masks = augment_sample(image, masks, rng)
            yield prepare_sample(image, masks, class_ids, config, image_id=index, rng=rng)

    def one_pass():
        # the pass number is taken at the call, not at the first next()
        rng = _pass_rng(base, passes[0])
        passes[0] += 1
        return samples(rng)

    return one_pass
