"""The README's first command, tools/demo.sh, end to end (about 1.5 minutes once installed).

Marked slow: its parts are covered by faster tests (test_install: g.extension;
test_train_module: training from GRASS maps; test_detect_module: detection,
reference= and the report). Run it with: bash tools/test.sh -m slow
"""
import re
import subprocess

import pytest

from conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.grass]


def test_demo_trains_detects_reports_and_draws(tmp_path):
    png = tmp_path / "demo.png"
    result = subprocess.run(["bash", str(ROOT / "tools" / "demo.sh"), str(png)],
                            capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "Accuracy against <demo_objects>" in out
    found = re.search(r"i.ann.maskrcnn.detect found (\d+)", out)
    there = re.search(r"there are (\d+) objects", out)
    assert found and there and int(found.group(1)) > 0
    figures = dict(re.findall(r"(precision|recall|F1|AP50) (\d\.\d\d)", out))
    assert float(figures["F1"]) >= 0.5 and float(figures["AP50"]) >= 0.5, out
    from PIL import Image

    with Image.open(png) as image:  # 3 pixels per cell of the 128 x 256 eastern half
        assert image.size == (384, 768)
    assert not list(tmp_path.glob("i.ann.maskrcnn-demo.*"))
