"""Random flips and right-angle rotations, radiometric changes, and the per-pass sample
stream for training.

Pure numpy: augment_sample moves pixels only (no interpolation), so masks stay
exactly aligned with their image; radiometric_change changes pixel values only. Arrays are [rows (y, down), columns (x, right), ...].
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


# Ranges of the radiometric changes (uniform draws), small enough that objects still
# look like themselves: brightness shifts every band by this share of its standard
# deviation in the image, contrast scales around the band mean, gain scales each band.
BRIGHTNESS = 0.1
CONTRAST = (0.9, 1.1)
BAND_GAIN = (0.95, 1.05)
KINDS = ("flip_rotate", "radiometric")


def radiometric_change(image, rng):
    """The image with random brightness, contrast and per-band gain; float32.

    image: [H, W(, bands)], any numeric dtype. Per band b, with m_b and s_b its mean and
    standard deviation in this image, draws (in this order) a brightness t uniform in
    [-BRIGHTNESS, BRIGHTNESS] (one for all bands), a contrast c uniform in CONTRAST (one
    for all bands) and a gain g_b uniform in BAND_GAIN (one per band), and returns
        g_b * (m_b + c * (x - m_b) + t * s_b)
    clipped to the range of the input dtype when it is an integer type (uint8 stays in
    0..255, uint16 in 0..65535). Masks are not touched: no pixel moves.
    """
    values = np.asarray(image, np.float32)
    flat = values.reshape(values.shape[0], values.shape[1], -1)
    brightness = rng.uniform(-BRIGHTNESS, BRIGHTNESS)
    contrast = rng.uniform(*CONTRAST)
    gain = rng.uniform(*BAND_GAIN, size=flat.shape[2]).astype(np.float32)
    mean = flat.mean(axis=(0, 1))
    spread = flat.std(axis=(0, 1))
    changed = gain * (mean + contrast * (flat - mean) + brightness * spread)
    if np.issubdtype(np.asarray(image).dtype, np.integer):
        limits = np.iinfo(np.asarray(image).dtype)
        changed = np.clip(changed, limits.min, limits.max)
    return changed.astype(np.float32).reshape(values.shape)


def augment_kinds(augment):
    """The set of augmentations asked for: True is flip_rotate (the earlier flag),
    False/None nothing, else an iterable of KINDS (ValueError for others)."""
    if augment is True:
        return {"flip_rotate"}
    kinds = set(augment or ()) - {"none"}
    unknown = kinds - set(KINDS)
    if unknown:
        raise ValueError("unknown augmentation {}; known: {}".format(
            ", ".join(sorted(unknown)), ", ".join(KINDS)))
    return kinds


def _pass_rng(seed, pass_index):
    """The Generator of one pass: a function of (seed, pass number) only."""
    return np.random.default_rng([pass_index, seed])


def augmented_iterator(dataset, config, seed=None, augment=True, shuffle=True):
    """A callable that returns, at each call, an iterator over one pass of `dataset`.

    dataset: anything with len() and load(index) -> (image, masks, class_ids).
    config: the Config given to pipeline.prepare_sample.
    Each call starts the next pass: its Generator is seeded by (seed, pass
    number), so the same seed gives the same sequence of passes (pass 0, 1, ...).
    Per pass: one permutation of the samples (shuffle) and, per sample, a random
    window when the dataset draws them (it has load_random(index, rng), e.g.
    dataset.windows.RandomWindows), augment_sample (augment holds flip_rotate, or is
    True) and radiometric_change (augment holds radiometric) before prepare_sample (which uses the same
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
    kinds = augment_kinds(augment)
    draws = getattr(dataset, "load_random", None)

    def samples(rng):
        order = rng.permutation(len(dataset)) if shuffle else np.arange(len(dataset))
        for index in order.tolist():
            image, masks, class_ids = draws(index, rng) if draws else dataset.load(index)
            if "flip_rotate" in kinds:
                image, masks = augment_sample(image, masks, rng)
            if "radiometric" in kinds:
                image = radiometric_change(image, rng)
            yield prepare_sample(image, masks, class_ids, config, image_id=index, rng=rng)

    def one_pass():
        # the pass number is taken at the call, not at the first next()
        rng = _pass_rng(base, passes[0])
        passes[0] += 1
        return samples(rng)

    return one_pass
