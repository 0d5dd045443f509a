"""Builds a module's GUI dialog with GRASS's own gui_core.forms and prints the
titles of its notebook pages as a JSON list, then exits.

Run with the Python the GUI runs with, in a GRASS session, on an X display:

    DISPLAY=:n python3 dialog_tabs.py MODULE

Exits 1 (with the message on stderr) when GRASS cannot read the module's
interface, as the GUI would show it in an error box instead of the dialog.
"""
import json
import os
import sys

import wx
from grass.script import task as gtask
from grass.script.setup import set_gui_path

set_gui_path()  # GRASS's gui/wxpython on sys.path: core, gui_core
from core.giface import StandaloneGrassInterface  # noqa: E402
from gui_core.forms import TaskFrame  # noqa: E402


def page_titles(module):
    task = gtask.grassTask(module)
    if task.get_error_msg():
        sys.exit(task.get_error_msg())
    frame = TaskFrame(parent=None, giface=StandaloneGrassInterface(),
                      task_description=task)
    notebook = frame.notebookpanel.notebook
    return [notebook.GetPageText(index) for index in range(notebook.GetPageCount())]


if __name__ == "__main__":
    app = wx.App(False)
    print(json.dumps(page_titles(sys.argv[1])), flush=True)
    # The dialog's worker threads keep wx (and a plain exit) from ever returning.
    os._exit(0)
