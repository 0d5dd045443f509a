"""Whether the input of a detection fits its model: cell size and pixel values
compared with what the model card says of the training data.

Pure arithmetic on numbers already read (the region's resolution, a sample of
each band's values; see maskrcnnlib.grassio.resample); raises DetectionError
naming both sides. Band counts are checked where the bands are listed
(maskrcnnlib.detect).
"""
import math

from maskrcnnlib.errors import DetectionError

# Objects are learned as sizes in cells: at 1.5x the training cell size an object
# covers 0.44x (or 2.25x) the cells it covered in training, beyond what scale
# augmentation and one anchor step (scales double) absorb; closer is accepted.
RESOLUTION_FACTOR = 1.5
# A band whose sampled mean lies more than this many training standard deviations
# from the training mean is of another kind (bit depth, scale, band): by
# Chebyshev's inequality at most 1 % of training cells lie that far, whatever
# their distribution, so no ordinary scene averages there.
FAR_STD = 10.0
# Spread (standard deviation) of the sampled values this many times smaller or
# larger than in training: other units (reflectance 0..1 against 8-bit values);
# calm scenes (water, fields) stay well within it.
FAR_SPREAD = 100.0
EIGHT_BIT_MAX = 255.0


def training_resolution(card):
    """(nsres, ewres) of the training data as the card records it, or None (unknown:
    no card, a directory dataset, a card written before the cell size was kept)."""
    data = (card or {}).get("training_data") or {}
    values = [data.get("nsres"), data.get("ewres")]
    if all(isinstance(v, (int, float)) and v > 0 for v in values):
        return tuple(float(v) for v in values)
    return None


def resolution_ratio(region_res, training_res):
    """The larger of region/training and training/region over both axes (>= 1)."""
    ratios = [region / training for region, training in zip(region_res, training_res)]
    return max(max(r, 1.0 / r) for r in ratios)


def _res_text(res):
    nsres, ewres = res
    if math.isclose(nsres, ewres, rel_tol=1e-9):
        return "{:g}".format(nsres)
    return "nsres={:g} ewres={:g}".format(nsres, ewres)


def check_resolution(region_res, training_res, model):
    """DetectionError when region_res (nsres, ewres) is off training_res by more
    than RESOLUTION_FACTOR either way; no check when training_res is None."""
    if training_res is None:
        return
    if resolution_ratio(region_res, training_res) > RESOLUTION_FACTOR:
        raise DetectionError(
            "The region's resolution ({}) differs from the resolution {} was trained at "
            "({}) by more than a factor {:g}: objects would not have the size in cells the "
            "model knows. Set the region to the model's resolution (g.region res={}) or add "
            "-r to detect on a copy resampled to it".format(
                _res_text(region_res), model, _res_text(training_res), RESOLUTION_FACTOR,
                "{:g}".format(training_res[0]) if math.isclose(*training_res, rel_tol=1e-9)
                else "{:g},{:g}".format(*training_res)))


def training_statistics(card, config):
    """Per-band {mean, std, minimum, maximum} of the training data, or None.

    From the card's normalization facts (every cell of every training image); a
    card without them but with from-scratch statistics (pixel_std not all 1) gives
    mean and std only; matterport's fixed mean pixel tells nothing of the data.
    """
    facts = (card or {}).get("normalization") or {}
    if all(isinstance(facts.get(key), list) for key in ("mean", "std", "minimum", "maximum")):
        return [{"mean": m, "std": s, "minimum": lo, "maximum": hi} for m, s, lo, hi in zip(
            facts["mean"], facts["std"], facts["minimum"], facts["maximum"])]
    if card is None or not config.pixel_std or all(s == 1.0 for s in config.pixel_std):
        return None
    return [{"mean": m, "std": s, "minimum": None, "maximum": None}
            for m, s in zip(config.pixel_mean, config.pixel_std)]


def _values_text(values):
    text = "mean {:.4g} ± {:.4g}".format(values["mean"], values["std"])
    if values.get("minimum") is not None and values.get("maximum") is not None:
        text += ", range {:.4g}..{:.4g}".format(values["minimum"], values["maximum"])
    return text


def far_from_training(sample, training):
    """Why one band's sample {mean, std, minimum, maximum} is far from the training
    band's statistics, or None when it is not."""
    std = training["std"] if training["std"] > 0 else 1.0
    if abs(sample["mean"] - training["mean"]) > FAR_STD * std:
        return "its mean lies {:.0f} training standard deviations away".format(
            abs(sample["mean"] - training["mean"]) / std)
    if sample["std"] > 0 and not (std / FAR_SPREAD <= sample["std"] <= std * FAR_SPREAD):
        return "its spread differs by a factor {:.0f}".format(
            max(sample["std"] / std, std / sample["std"]))
    if training["mean"] - 2 * std > EIGHT_BIT_MAX and sample["maximum"] <= EIGHT_BIT_MAX:
        return "it holds 8-bit values, the training data mostly values above 255"
    return None


def check_statistics(samples, training, names, model):
    """DetectionError when a band's sample is far from the training data.

    samples: per band {mean, std, minimum, maximum} (None: no cell sampled);
    training: training_statistics(); names: the band rasters.
    """
    if training is None:
        return
    for band, (sample, trained, name) in enumerate(zip(samples, training, names)):
        if sample is None:
            continue
        reason = far_from_training(sample, trained)
        if reason:
            raise DetectionError(
                "Band {} <{}> is far from what {} was trained on ({}): the region holds {}, "
                "the training data {}. Give bands of the kind the model was trained on "
                "(same sensor, bit depth and band order), rescaled if needed (r.rescale, "
                "r.mapcalc)".format(band + 1, name, model, reason, _values_text(sample),
                                    _values_text(trained)))
