"""i.ann.maskrcnn.train -s / validation_map= / sampling=random from GRASS maps, through the
module: held-out cells never inside a training window; random windows move between steps."""
import json

import numpy as np
import pytest

from support.grass_helpers import error_message
from test_train_module import scene_maps, train  # noqa: F401 (a fixture)

pytestmark = pytest.mark.grass
TILE, OVERLAP = 64, 16


def held_blocks(text):
    """[(north, south, east, west)] of the '# block' lines of held_out.txt."""
    blocks = []
    for line in text.splitlines():
        if line.startswith("# block"):
            fields = dict(item.split("=") for item in line.split(": ", 1)[1].split())
            blocks.append(tuple(float(fields[k]) for k in ("north", "south", "east", "west")))
    return blocks


def chip_window(chip_id):
    row, col = chip_id.split("_")
    return int(row[1:]), int(col[1:])


def cells_of(blocks, rows=128, cols=128, north=128.0, west=0.0):
    """bool [rows, cols] of the region (res 1) inside the blocks."""
    held = np.zeros((rows, cols), bool)
    for top, bottom, east, left in blocks:
        held[int(north - top):int(north - bottom), int(left - west):int(east - west)] = True
    return held


def test_held_out_blocks_and_random_windows(run_module, scene_maps, tmp_path):  # noqa: F811
    bands, areas = scene_maps
    logs = tmp_path / "logs"
    result = train(run_module, "-s", input=",".join(bands), training_map=areas,
                   class_column="kind", tile_size=TILE, overlap=OVERLAP, logs=logs,
                   epochs=1, steps_per_epoch=6, sampling="random", seed=3,
                   augment="flip_rotate,radiometric")
    assert result.returncode == 0, result.stderr
    text = (logs / "held_out.txt").read_text()
    blocks = held_blocks(text)
    assert blocks, text
    held = cells_of(blocks)
    chips = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert chips
    for chip in chips:  # validation chips lie wholly inside the held-out blocks
        row, col = chip_window(chip)
        assert held[row:row + TILE, col:col + TILE].all()
    with open(logs / "training_windows.txt") as stream:
        header, *lines = stream.read().splitlines()
    assert header.split("\t")[:2] == ["row", "col"]
    drawn = [tuple(int(v) for v in line.split("\t")[:2]) for line in lines]
    assert len(drawn) >= 6 and len(set(drawn)) > 3  # windows differ between steps
    for row, col in drawn:  # inside the region, no held-out cell in any of them
        assert 0 <= row <= 128 - TILE and 0 <= col <= 128 - TILE
        assert not held[row:row + TILE, col:col + TILE].any(), (row, col)
    card = json.loads((logs / "mask_rcnn_test_0001.json").read_text())
    assert card["sampling"] == "random" and card["augment"] == ["flip_rotate", "radiometric"]


def validation_areas(name, extents):
    import grass.script as gs

    lines = []
    for cat, (west, south, east, north) in enumerate(extents, 1):
        lines.append(f"B 5\n {west} {south}\n {west} {north}\n {east} {north}\n"
                     f" {east} {south}\n {west} {south}\n"
                     f"C 1 1\n {(west + east) / 2} {(north + south) / 2}\n 1 {cat}")
    gs.write_command("v.in.ascii", input="-", output=name, format="standard", flags="n",
                     stdin="\n".join(lines), overwrite=True, quiet=True)


def test_validation_map_and_its_errors(run_module, scene_maps, tmp_path):  # noqa: F811
    bands, areas = scene_maps
    common = dict(input=",".join(bands), training_map=areas, class_column="kind",
                  tile_size=TILE, overlap=OVERLAP, epochs=1, seed=1)
    # the west half of the region (chips with origin col 0 lie wholly inside)
    validation_areas("val_west", [(0, 0, 64, 128)])
    logs = tmp_path / "logs"
    result = train(run_module, validation_map="val_west", logs=logs, **common)
    assert result.returncode == 0, result.stderr
    text = (logs / "held_out.txt").read_text()
    assert text.startswith("# validation areas: val_west")
    chips = [line for line in text.splitlines() if not line.startswith("#")]
    assert chips and all(chip_window(chip)[1] == 0 for chip in chips)
    assert "0 held out" not in result.stderr
    validation_areas("val_far", [(1000, 1000, 1100, 1100)])
    result = train(run_module, validation_map="val_far", logs=tmp_path / "l2", **common)
    assert result.returncode != 0
    assert "outside the current region" in error_message(result.stderr), result.stderr
    validation_areas("val_small", [(0, 0, 30, 30)])
    result = train(run_module, validation_map="val_small", logs=tmp_path / "l3", **common)
    assert result.returncode != 0
    message = error_message(result.stderr)
    assert "validation_map <val_small" in message and "wholly inside" in message, message
