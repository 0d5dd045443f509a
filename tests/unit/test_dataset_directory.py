"""DirectoryDataset (original layout), ArrayDataset, split_holdout and the writer."""
import os

import numpy as np
import pytest
import skimage.io
import tifffile
from PIL import Image

from maskrcnnlib.dataset.directory import (ArrayDataset, DirectoryDataset, split_holdout,
                                           write_directory_dataset)
from maskrcnnlib.errors import DatasetError

CLASSES = ["building", "water-body"]


def _png(path, array):
    Image.fromarray(array).save(path)


def _square(shape, y, x, side):
    mask = np.zeros(shape, np.uint8)
    mask[y:y + side, x:x + side] = 255
    return mask


def make_dataset(root):
    """Two RGB images: 'a' (jpg, 2 buildings + 1 water-body), 'b' (png, 1 building)."""
    os.makedirs(root / "a")
    os.makedirs(root / "b")
    rgb = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    _png(root / "a" / "a.jpg", rgb)
    _png(root / "a" / "a-building-1.png", _square((20, 30), 2, 3, 4))
    _png(root / "a" / "a-building-2.png", np.stack([_square((20, 30), 10, 10, 5)] * 3, -1))
    _png(root / "a" / "a-water-body-1.png", _square((20, 30), 0, 20, 6))
    _png(root / "b" / "b.png", np.full((20, 30, 3), 7, np.uint8))
    _png(root / "b" / "b-building-1.png", _square((20, 30), 5, 5, 3))
    (root / "b" / "notes.txt").write_text("ignored")
    return root


def test_loads_images_masks_and_class_ids_from_names(tmp_path):
    dataset = DirectoryDataset(make_dataset(tmp_path), CLASSES)
    assert len(dataset) == 2 and dataset.image_ids == ["a", "b"]
    assert dataset.bands == 3
    image, masks, class_ids = dataset.load(0)
    assert image.shape == (20, 30, 3) and image.dtype == np.uint8
    assert masks.shape == (20, 30, 3) and masks.dtype == bool
    assert class_ids.dtype == np.int32 and class_ids.tolist() == [1, 1, 2]
    assert masks[:, :, 0].sum() == 16 and masks[2, 3, 0] and not masks[1, 3, 0]
    assert masks[:, :, 1].sum() == 25  # RGB mask: any channel counts
    assert masks[:, :, 2].sum() == 36 and masks[0, 20, 2]
    assert dataset.class_counts() == {"building": 3, "water-body": 1}


def test_palette_mask_counts_its_colours_not_indices(tmp_path):
    make_dataset(tmp_path)
    palette = Image.fromarray((_square((20, 30), 1, 1, 2) > 0).astype(np.uint8), "P")
    palette.putpalette([255, 0, 0, 0, 0, 0] + [0] * 762)  # index 0 is red: object
    palette.save(tmp_path / "b" / "b-building-1.png")
    assert DirectoryDataset(tmp_path, CLASSES).load(1)[1][:, :, 0].sum() == 20 * 30 - 4


@pytest.mark.parametrize("bands, write", [
    (4, lambda p, a: tifffile.imwrite(p, a, photometric="minisblack", planarconfig="contig")),
    (5, lambda p, a: skimage.io.imsave(p, a, check_contrast=False)),  # stored as 20 pages
])
def test_multiband_tiff_and_band_check(tmp_path, bands, write):
    make_dataset(tmp_path)
    os.remove(tmp_path / "a" / "a.jpg")
    many = np.arange(20 * 30 * bands, dtype=np.uint16).reshape(20, 30, bands)
    write(str(tmp_path / "a" / "a.tif"), many)
    dataset = DirectoryDataset(tmp_path, CLASSES)
    assert dataset.bands == bands
    np.testing.assert_array_equal(dataset.load(0)[0], many)
    with pytest.raises(DatasetError, match=r"b\.png has 3 band.*has {}".format(bands)):
        dataset.load(1)


def test_planar_tiff_bands_go_last(tmp_path):
    make_dataset(tmp_path)
    os.remove(tmp_path / "a" / "a.jpg")
    planar = np.arange(5 * 20 * 30, dtype=np.float32).reshape(5, 20, 30)
    tifffile.imwrite(tmp_path / "a" / "a.tiff", planar, planarconfig="separate",
                     photometric="minisblack")
    image = DirectoryDataset(tmp_path, CLASSES).load(0)[0]
    np.testing.assert_array_equal(image, np.moveaxis(planar, 0, -1))


@pytest.mark.parametrize("damage, message", [
    (lambda r: r / "missing", "does not exist"),
    (lambda r: (r / "empty").mkdir() or r / "empty", "no image folders"),
    (lambda r: os.remove(r / "b" / "b.png") or r, r"b has no image b\."),
    (lambda r: [os.remove(r / "b" / n) for n in ["b-building-1.png"]] and r, "b.png has no mask"),
    (lambda r: _png(r / "b" / "b-tree-1.png", _square((20, 30), 0, 0, 2)) or r,
     r"b-tree-1\.png is of class 'tree'.*building, water-body"),
    (lambda r: _png(r / "b" / "b-building.png", _square((20, 30), 0, 0, 2)) or r,
     r"b-building\.png does not follow"),
    (lambda r: _png(r / "b" / "b.jpg", np.zeros((20, 30), np.uint8)) or r,
     "several images of b: b.jpg, b.png"),
    (lambda r: _png(r / "b" / "b-building-01.png", _square((20, 30), 0, 0, 2)) or r,
     "both instance 1 of class 'building'"),
    (lambda r: _png(r / "b" / "b-building-3.jpg", _square((20, 30), 0, 0, 2)) or r,
     "must be PNG"),
])
def test_bad_layouts_raise_naming_the_problem(tmp_path, damage, message):
    root = damage(make_dataset(tmp_path / "data"))
    with pytest.raises(DatasetError, match=message):
        DirectoryDataset(root, CLASSES)


def test_bad_files_raise_at_load(tmp_path):
    make_dataset(tmp_path)
    _png(tmp_path / "a" / "a-water-body-1.png", _square((21, 30), 0, 0, 2))
    (tmp_path / "b" / "b.png").write_bytes(b"\x89PNG not a png")
    dataset = DirectoryDataset(tmp_path, CLASSES)
    with pytest.raises(DatasetError, match=r"Cannot read image .*b\.png"):
        dataset.load(1)
    with pytest.raises(DatasetError, match=r"a-water-body-1\.png is 21x30 .*a\.jpg is 20x30"):
        dataset.load(0)
    (tmp_path / "a" / "a-building-1.png").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"Cannot read mask .*a-building-1\.png"):
        dataset.load(0)


def test_split_holdout_is_deterministic_and_holds_out_ten_percent():
    ids = ["id{}".format(i) for i in range(50)]
    kept, held = split_holdout(ids, share=0.1, seed=3)
    assert len(held) == 5 and len(kept) == 45 and sorted(kept + held) == sorted(ids)
    assert kept == [i for i in ids if i not in held]  # input order kept
    assert split_holdout(ids, 0.1, seed=3) == (kept, held)
    assert split_holdout(ids, 0.1, seed=4) != (kept, held)
    assert split_holdout(ids, 0.1) == split_holdout(ids, 0.1)  # None: fixed seed
    assert [len(split_holdout(range(n), 0.1, 1)[1]) for n in (1, 2, 9, 15, 100)] == [0, 1, 1, 2, 10]


def test_write_then_read_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    samples = []
    for bands, dtype in [(3, np.uint8), (3, np.uint8), (1, np.uint16), (1, np.uint8)]:
        image = rng.integers(0, 200, (12, 16, bands)).astype(dtype)
        masks = np.zeros((12, 16, 3), bool)
        masks[1:4, 1:4, 0], masks[5:9, 2:7, 1], masks[0:2, 10:16, 2] = True, True, True
        samples.append((image, masks, np.array([2, 1, 2], np.int32)))
    ids = write_directory_dataset(tmp_path / "out", samples[:2], CLASSES, ids=["x-1", "y"])
    assert sorted(os.listdir(tmp_path / "out" / "x-1")) == [
        "x-1-building-1.png", "x-1-water-body-1.png", "x-1-water-body-2.png", "x-1.png"]
    dataset = DirectoryDataset(tmp_path / "out", CLASSES)
    assert dataset.image_ids == ids == ["x-1", "y"]
    for index, (image, masks, class_ids) in enumerate(samples[:2]):
        got_image, got_masks, got_ids = dataset.load(index)
        np.testing.assert_array_equal(got_image, image)
        order = np.argsort(class_ids, kind="stable")  # the reader sorts by class, then number
        np.testing.assert_array_equal(got_masks, masks[:, :, order])
        assert got_ids.tolist() == class_ids[order].tolist()
    with pytest.raises(DatasetError, match="not empty"):
        write_directory_dataset(tmp_path / "out", samples[2:], CLASSES)
    negative = (samples[3][0], np.zeros((12, 16, 0), bool), np.zeros(0, np.int32))
    assert write_directory_dataset(tmp_path / "out", samples[2:] + [negative], CLASSES,
                                   overwrite=True) == ["000001", "000002"]  # negative skipped
    assert sorted(os.listdir(tmp_path / "out")) == ["000001", "000002"]
    assert "000001.tif" in os.listdir(tmp_path / "out" / "000001")  # uint16 goes to TIFF
    assert "000002.png" in os.listdir(tmp_path / "out" / "000002")
    grey = DirectoryDataset(tmp_path / "out", CLASSES)
    for index, sample in enumerate(samples[2:]):
        np.testing.assert_array_equal(grey.load(index)[0], sample[0])
        assert grey.load(index)[0].dtype == sample[0].dtype


def test_array_dataset_interface_and_checks():
    image = np.zeros((8, 9, 2), np.float32)
    masks = np.zeros((8, 9, 2), bool)
    dataset = ArrayDataset([(image, masks, [1, 2]), (image, masks[:, :, :1], [2])], CLASSES)
    assert len(dataset) == 2 and dataset.image_ids == ["000001", "000002"]
    assert dataset.bands == 2
    assert dataset.load(1)[2].tolist() == [2] and dataset.load(1)[1].shape == (8, 9, 1)
    assert dataset.class_counts() == {"building": 1, "water-body": 2}
    assert ArrayDataset([(image, masks, [1, 3])]).class_counts() == {"1": 1, "2": 0, "3": 1}
    negative = ArrayDataset([(image, masks[:, :, :0], [])], CLASSES, image_ids=["n"])
    assert negative.load(0)[1].shape == (8, 9, 0) and negative.image_ids == ["n"]
    with pytest.raises(DatasetError, match="outside 1..2"):
        ArrayDataset([(image, masks, [1, 3])], CLASSES)
    with pytest.raises(DatasetError, match="2 masks but 1 class ids"):
        ArrayDataset([(image, masks, [1])])
    with pytest.raises(DatasetError, match="do not fit"):
        ArrayDataset([(image, masks[:4], [1, 1])])


def test_write_from_a_generator_reads_one_sample_at_a_time(tmp_path):
    """With ids, samples from a generator are written as they come (the training chips of
    a large area are never all in memory); fewer samples than ids is an error."""
    alive = []

    def chips(count):
        for index in range(count):
            masks = np.zeros((8, 8, 1), bool)
            masks[2:5, 2:6] = True
            alive.append(index)
            yield np.full((8, 8, 3), index, np.uint8), masks, np.array([1], np.int32)
            # the writer asks for the next sample only once this one is on disk
            assert os.path.isfile(tmp_path / "out" / "c{}".format(index) /
                                  "c{}-{}-1.png".format(index, CLASSES[0]))

    ids = ["c{}".format(i) for i in range(3)]
    assert write_directory_dataset(tmp_path / "out", chips(3), CLASSES, ids=ids) == ids
    assert alive == [0, 1, 2]
    loaded = DirectoryDataset(tmp_path / "out", CLASSES)
    assert [int(loaded.load(i)[0][0, 0, 0]) for i in range(3)] == [0, 1, 2]
    with pytest.raises(DatasetError, match="4 ids for 3 samples"):
        write_directory_dataset(tmp_path / "again", chips(3), CLASSES, ids=ids + ["c3"])
