"""The layout of matterport's published mask_rcnn_coco.h5, which the product ships (maskrcnnlib/pretrained.py checks downloads against it).

maskrcnnlib/data/matterport_coco_r101_layout.json (where it came from:
tests/fixtures/matterport/README.md): root attributes, then every layer in the
file's order as [layer name, [[weight name, shape], ...]].
"""
import json
from pathlib import Path

COCO_LAYOUT = Path(__file__).resolve().parents[2] / "maskrcnnlib" / "data" / \
    "matterport_coco_r101_layout.json"


def coco_layout():
    """The parsed layout: a dict with "layers"; a missing fixture raises, it never skips."""
    return json.loads(COCO_LAYOUT.read_text())
