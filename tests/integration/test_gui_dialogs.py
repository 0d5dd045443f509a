"""Both module dialogs open in the GRASS GUI, on a virtual screen (Xvfb), with
their options grouped in tabs by guisection.

The dialogs run as the GUI runs them: GRASS's gui_core/forms.py with the system
Python (which has no TensorFlow) on the modules installed with g.extension.
"""
import json
import os
import select
import signal
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest

from conftest import ROOT

pytestmark = pytest.mark.grass
SYSTEM_PYTHON = "/usr/bin/python3"  # the GUI's Python: no TensorFlow there
TIMEOUT = 30  # seconds; a dialog opens in about 2 on an idle 2-core machine

# The tabs of each dialog: the modules' guisections, in the order of the headers.
TABS = {
    "i.ann.maskrcnn.train": ["Input", "Model", "Output", "Training", "Images"],
    "i.ann.maskrcnn.detect": ["Input", "Model", "Output", "Tiling", "Accuracy"],
}
# Pages the GUI adds to every dialog: GRASS's standard flags (--overwrite...),
# the command's output and the installed manual page.
GUI_PAGES = ["Optional", "Command output", "Manual"]
STANDARD_FLAGS = {"overwrite", "help", "verbose", "quiet", "ui"}


@pytest.fixture(scope="module")
def display():
    """A virtual screen; returns its DISPLAY value (":n")."""
    if not os.path.exists("/usr/bin/Xvfb"):
        pytest.fail("Xvfb is not installed: run tools/test.sh (it installs xvfb)")
    # -displayfd: Xvfb picks a free display itself and writes its number once ready;
    # -noreset: no server reset (refusing connections) after each dialog closes
    read_end, write_end = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_end), "-screen", "0", "1280x1024x24",
         "-br", "-noreset", "-nolisten", "tcp"],
        pass_fds=[write_end], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True)
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], TIMEOUT)
        number = os.read(read_end, 16).decode().strip() if ready else ""
        if not number:
            server.kill()
            pytest.fail("Xvfb did not start: " + server.communicate()[1].decode())
        yield f":{number}"
    finally:
        os.close(read_end)
        stop(server)


def stop(process):
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture
def gui_env(addon, display):
    assert addon["result"].returncode == 0, addon["result"].stderr
    return dict(addon["env"], DISPLAY=display, LC_ALL="C.UTF-8")


def interface(addon, module):
    installed = str(addon["base"] / "scripts" / module)
    result = subprocess.run([SYSTEM_PYTHON, installed, "--interface-description"],
                            env=addon["env"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return ET.fromstring(result.stdout)


@pytest.mark.parametrize("module", sorted(TABS))
def test_options_are_grouped_in_the_expected_guisections(addon, module):
    task = interface(addon, module)
    sections = set()
    for item in task.findall("parameter") + task.findall("flag"):
        if item.tag == "flag" and item.get("name") in STANDARD_FLAGS:
            continue
        section = (item.findtext("guisection") or "").strip()
        assert section, f"{module}: {item.tag} {item.get('name')} has no guisection"
        sections.add(section)
    assert sections == set(TABS[module])


@pytest.mark.parametrize("module", sorted(TABS))
def test_dialog_tabs_are_the_guisections(gui_env, module):
    """gui_core.forms builds the dialog in-process (tests/support/dialog_tabs.py)."""
    result = subprocess.run(
        [SYSTEM_PYTHON, str(ROOT / "tests" / "support" / "dialog_tabs.py"), module],
        env=gui_env, capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert json.loads(result.stdout) == TABS[module] + GUI_PAGES


def x_windows(env):
    """The top-level windows on the display: {title: window id}."""
    tree = subprocess.run(["xwininfo", "-root", "-children"], env=env,
                          capture_output=True, text=True).stdout
    windows = {}
    for line in tree.splitlines():
        # '     0x200111 "i.ann.maskrcnn.detect": ("forms.py" "Forms")  642x500+...'
        parts = line.strip().split('"')
        if line.strip().startswith("0x") and len(parts) > 2:
            windows[parts[1]] = parts[0].strip()
    return windows


def is_viewable(env, window):
    info = subprocess.run(["xwininfo", "-id", window], env=env, capture_output=True,
                          text=True).stdout
    return "Map State: IsViewable" in info


def colours(path):
    result = subprocess.run(["identify", "-format", "%k", str(path)],
                            capture_output=True, text=True, check=True)
    return int(result.stdout)


@pytest.mark.parametrize("module", sorted(TABS))
def test_dialog_opens_on_the_screen_without_error(gui_env, module, tmp_path):
    forms = os.path.join(gui_env["GISBASE"], "gui", "wxpython", "gui_core", "forms.py")
    stderr_path = tmp_path / "dialog.stderr"
    screenshot = tmp_path / f"{module}.png"
    with open(stderr_path, "w") as stderr:
        dialog = subprocess.Popen([SYSTEM_PYTHON, forms, module], env=gui_env,
                                  stdout=subprocess.DEVNULL, stderr=stderr,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        window = None
        while time.monotonic() < deadline and dialog.poll() is None:
            windows = x_windows(gui_env)
            window = windows.get(module)
            if (window and is_viewable(gui_env, window)) or "Error" in windows:
                break  # the dialog, or GRASS's error box in its place
            time.sleep(0.2)
        errors = stderr_path.read_text()
        assert dialog.poll() is None, f"the dialog process ended:\n{errors}"
        assert window and is_viewable(gui_env, window), \
            f"no dialog '{module}' within {TIMEOUT} s, only {sorted(x_windows(gui_env))}" \
            f"\n{errors}"
        # painted: a blank screen has one colour, the dialog (text, widgets) hundreds
        while True:
            subprocess.run(["import", "-window", "root", str(screenshot)], env=gui_env,
                           check=True, capture_output=True)
            painted = colours(screenshot)
            if painted > 64 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert painted > 64, f"the screen stays blank ({painted} colours): {screenshot}"
        assert dialog.poll() is None
        errors = stderr_path.read_text()
        assert "Traceback" not in errors, errors
        assert not [line for line in errors.splitlines()
                    if line.lstrip().upper().startswith("ERROR")], errors
    finally:
        stop(dialog)
