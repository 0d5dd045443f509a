"""How the pixel values of the training data reach the network: per-band statistics
over all training images, and the normalization that follows from them.

The network sees (value - pixel_mean) / pixel_std per band (model.molding.mold_image).

* From scratch: pixel_mean and pixel_std are each band's mean and standard deviation
  over every cell of every training image.
* From pretrained weights of RGB imagery (COCO, ImageNet; up to 3 bands), the network
  expects 8-bit values minus matterport's mean pixel. 8-bit data (whole numbers in
  0..255) gets exactly that. Other data (16-bit digital numbers, reflectance) is first
  stretched linearly, per band, so that its 2nd percentile becomes 0 and its 98th
  percentile 255 (values beyond stay beyond: no clipping); stretch and mean fold into
  one pixel_mean and pixel_std, so the model card carries it and detection applies it
  as it applies any normalization.

Two passes over the images, one image in memory at a time: sums, extremes and
whether all values are whole numbers first; then, for the stretch, a histogram per
band (one bin per whole number for integer data spanning at most 65536 values, else
4096 bins between the extremes) from which the percentiles are read.
"""
from dataclasses import dataclass

import numpy as np

from maskrcnnlib.errors import DatasetError

STRETCH_PERCENTILES = (2.0, 98.0)
FLOAT_BINS = 4096


@dataclass
class BandStatistics:
    mean: list
    std: list  # 1.0 where a band is constant
    minimum: list
    maximum: list
    whole_numbers: bool  # every value of every band is a whole number
    cells: int  # per band

    @property
    def eight_bit(self):
        return self.whole_numbers and min(self.minimum) >= 0 and max(self.maximum) <= 255


def _bands_of(image, bands):
    values = np.asarray(image)
    if values.ndim == 2:
        values = values[:, :, None]
    if values.shape[-1] != bands:
        raise DatasetError("An image has {} bands, the first one {}".format(
            values.shape[-1], bands))
    return values.reshape(-1, bands)


def band_statistics(dataset, bands):
    """BandStatistics over every image of dataset (len(), load(i) -> (image, ...))."""
    total, square = np.zeros(bands), np.zeros(bands)
    low, high = np.full(bands, np.inf), np.full(bands, -np.inf)
    whole, count = True, 0
    for index in range(len(dataset)):
        values = _bands_of(dataset.load(index)[0], bands)
        if not values.size:
            continue
        as_float = values.astype(np.float64)
        total += as_float.sum(axis=0)
        square += np.square(as_float).sum(axis=0)
        low = np.minimum(low, as_float.min(axis=0))
        high = np.maximum(high, as_float.max(axis=0))
        whole = whole and (values.dtype.kind in "ui" or bool(np.all(np.mod(as_float, 1) == 0)))
        count += values.shape[0]
    if not count:
        raise DatasetError("The training images hold no cells")
    mean = total / count
    std = np.sqrt(np.maximum(square / count - np.square(mean), 0.0))
    return BandStatistics(mean.tolist(), np.where(std > 0, std, 1.0).tolist(), low.tolist(),
                          high.tolist(), whole, count)


def band_percentiles(dataset, stats, percentiles=STRETCH_PERCENTILES):
    """[[value at each percentile] per band] over every image, from histograms."""
    bands = len(stats.mean)
    edges = []
    for band in range(bands):
        low, high = stats.minimum[band], stats.maximum[band]
        if stats.whole_numbers and high - low < 65536:
            edges.append(np.arange(low - 0.5, high + 1.0, 1.0))  # one bin per value
        else:
            edges.append(np.linspace(low, high if high > low else low + 1.0, FLOAT_BINS + 1))
    counts = [np.zeros(len(e) - 1, np.int64) for e in edges]
    for index in range(len(dataset)):
        values = _bands_of(dataset.load(index)[0], bands)
        for band in range(bands):
            counts[band] += np.histogram(values[:, band], bins=edges[band])[0]
    result = []
    for band in range(bands):
        cumulative = np.cumsum(counts[band])
        centres = (edges[band][:-1] + edges[band][1:]) / 2
        found = []
        for percentile in percentiles:
            rank = percentile / 100.0 * cumulative[-1]
            found.append(float(centres[min(np.searchsorted(cumulative, rank), len(centres) - 1)]))
        result.append(found)
    return result


def normalization(dataset, bands, pretrained_rgb, rgb_mean):
    """(pixel_mean, pixel_std, description) for the training data.

    pretrained_rgb: the run starts from weights trained on 8-bit RGB imagery (and the
    data has at most 3 bands); rgb_mean: the mean pixel those weights expect.
    description: a dict for the model card saying what was done and from what.
    """
    stats = band_statistics(dataset, bands)
    facts = {"cells_per_band": stats.cells, "minimum": stats.minimum,
             "maximum": stats.maximum, "mean": stats.mean, "std": stats.std}
    if not pretrained_rgb:
        return stats.mean, stats.std, dict(facts, method="mean and standard deviation")
    mean = list(rgb_mean[:bands])
    if stats.eight_bit:
        return mean, [1.0] * bands, dict(facts, method="8-bit values minus the mean pixel")
    stretch = band_percentiles(dataset, stats)
    pixel_mean, pixel_std = [], []
    for band, (low, high) in enumerate(stretch):
        scale = (high - low) / 255.0 if high > low else 1.0
        # (v - low) / scale - mean  ==  (v - (low + mean * scale)) / scale
        pixel_mean.append(low + mean[band] * scale)
        pixel_std.append(scale)
    return pixel_mean, pixel_std, dict(
        facts, method="percentile stretch to 0..255, then minus the mean pixel",
        percentiles=list(STRETCH_PERCENTILES), stretch=stretch)
