"""The stderr filter that drops TensorFlow's C++ log lines (maskrcnnlib/logfilter.py)."""
import subprocess
import sys

import pytest

from maskrcnnlib import logfilter
from maskrcnnlib.logfilter import LogLineFilter
from maskrcnnlib.quiet import tensorflow_logs_wanted

ABSL = (b"E0000 00:00:1796337263.347311    5544 node_def_util.cc:682] NodeDef mentions "
        b"attribute use_unbounded_threadpool which is not in the op definition\n")
ABSL_INFO = b"I0000 00:00:1796337381.455370    7309 service.cc:152]   StreamExecutor\n"
TSL = b"2026-05-01 12:00:00.123456: W tensorflow/core/util/port.cc:113] oneDNN notice\n"
NOTICE = (b"WARNING: All log messages before absl::InitializeLog() is called are written "
          b"to STDERR\n")
PERCENT = b"  50%\b\b\b\b\b"  # what g.message -p writes in the plain format


def run(chunks):
    line_filter = LogLineFilter()
    return b"".join(line_filter.feed(chunk) for chunk in chunks) + line_filter.flush()


CASES = [
    # (stream, what passes)
    (b"Epoch 1/2: loss 3.8\n" + ABSL + b"Epoch 2/2: loss 3.1\n",
     b"Epoch 1/2: loss 3.8\nEpoch 2/2: loss 3.1\n"),
    (ABSL_INFO + TSL + NOTICE + b"Last checkpoint: a.h5\n", b"Last checkpoint: a.h5\n"),
    (b"WARNING: No objects detected\n", b"WARNING: No objects detected\n"),
    (b"ERROR: Raster map <x> not found\n", b"ERROR: Raster map <x> not found\n"),
    (b"F0000 00:00:1.0 1 op.cc:1] Check failed\n",  # fatal: the reason of a crash
     b"F0000 00:00:1.0 1 op.cc:1] Check failed\n"),
    (PERCENT + ABSL + b"Epoch 2/2\n", PERCENT + b"Epoch 2/2\n"),  # log after a percent
    (b"GRASS_INFO_PERCENT: 50\n" + ABSL + b"GRASS_INFO_END\n",
     b"GRASS_INFO_PERCENT: 50\nGRASS_INFO_END\n"),
    (b"E\nE0\n\n2026 was\nI0000 not a time\n", b"E\nE0\n\n2026 was\nI0000 not a time\n"),
    (b"Traceback (most recent call last):\r\n" + ABSL + b"x\r" + TSL,
     b"Traceback (most recent call last):\r\nx\r"),
]


@pytest.mark.parametrize("stream, expected", CASES)
def test_log_lines_are_dropped_and_the_rest_passes_in_order(stream, expected):
    assert run([stream]) == expected
    # however the writes are cut into reads
    assert run([stream[i:i + 1] for i in range(len(stream))]) == expected
    for cut in range(0, len(stream), 7):
        assert run([stream[:cut], stream[cut:]]) == expected


def test_text_passes_at_once_without_waiting_for_its_newline():
    line_filter = LogLineFilter()
    assert line_filter.feed(PERCENT) == PERCENT  # progress shows while a step runs
    assert line_filter.feed(b"Epoch 1") == b"Epoch 1"
    assert line_filter.feed(b"/2\nE0000 00:0") == b"/2\n"  # held: may be a log line
    assert line_filter.feed(b"0:17.5 7 a.cc:1] x") == b""
    assert line_filter.feed(b"yz\nok") == b"ok"


def test_an_undecided_start_comes_out_at_the_end():
    line_filter = LogLineFilter()
    assert line_filter.feed(b"W12") == b""
    assert line_filter.flush() == b"W12"


def test_the_filter_process_passes_stdin_to_stdout():
    stream = b"Training all layers\n" + NOTICE + ABSL + PERCENT + b"Epoch 1/1\n"
    result = subprocess.run([sys.executable, "-I", "-S", logfilter.__file__],
                            input=stream, capture_output=True, check=True)
    assert result.stdout == b"Training all layers\n" + PERCENT + b"Epoch 1/1\n"
    assert result.stderr == b""


@pytest.mark.parametrize("environ, wanted", [
    ({}, False), ({"GRASS_VERBOSE": "2"}, False), ({"GRASS_VERBOSE": "1"}, False),
    ({"GRASS_VERBOSE": "3"}, True), ({"MASKRCNN_TF_LOG": "1"}, True),
    ({"MASKRCNN_TF_LOG": "0"}, False), ({"MASKRCNN_TF_LOG": ""}, False),
    ({"GRASS_VERBOSE": "x"}, False)])
def test_tensorflow_logs_are_wanted_with_verbose_or_the_variable(environ, wanted):
    assert tensorflow_logs_wanted(environ) is wanted
