"""Training progress: percent over all steps, epoch durations and the time left."""
from types import SimpleNamespace

import pytest

from maskrcnnlib.train import _EpochReport, format_duration, seconds_left


@pytest.mark.parametrize("stage_epochs, epochs_left, expected", [
    ([30.0], 4, 120.0),  # only the first epoch (with compiling) is known
    ([30.0, 10.0], 4, 40.0),  # later epochs: the first one no longer counts
    ([30.0, 10.0, 14.0], 3, 36.0),
    ([30.0, 10.0], 0, 0.0),
    ([], 5, 0.0),
])
def test_seconds_left(stage_epochs, epochs_left, expected):
    assert seconds_left(stage_epochs, epochs_left) == pytest.approx(expected)


@pytest.mark.parametrize("seconds, text", [
    (0.4, "0 s"), (48.2, "48 s"), (89.4, "89 s"), (90, "2 min"), (150, "2 min"),
    (5399, "90 min"), (5400, "1.5 h"), (9000, "2.5 h")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def report(steps_per_epoch, total_epochs, accumulation_steps=1):
    calls = []
    config = SimpleNamespace(accumulation_steps=accumulation_steps)
    callback = _EpochReport(None, config, None, "t", None, {}, print,
                            lambda *args: calls.append(args), steps_per_epoch,
                            total_epochs)
    return callback, calls


def train_epochs(callback, epochs, batches):
    for epoch in epochs:
        callback.on_epoch_begin(epoch)
        for batch in range(batches):
            callback.on_train_batch_end(batch, {"loss": 1.0})


def test_percent_once_per_whole_percent_over_all_epochs():
    callback, calls = report(steps_per_epoch=300, total_epochs=4)
    train_epochs(callback, range(2), 300)  # two stages: two fits
    train_epochs(callback, range(2, 4), 300)
    assert len(calls) == 101  # 0 % after the first step, ..., 100 %; not 1200 calls
    assert calls[0] == (1, 1200, 1) and calls[1] == (12, 1200, 1)
    assert calls[-1] == (1200, 1200, 1)
    assert [100 * done // total for done, total, _ in calls] == list(range(101))


def test_percent_of_a_resumed_run_counts_its_own_steps():
    # resumed at epoch 3 of 5, 2 steps of 3 accumulated batches each
    callback, calls = report(steps_per_epoch=2, total_epochs=5, accumulation_steps=3)
    train_epochs(callback, range(3, 5), 6)
    assert calls[0] == (1, 12, 1) and calls[-1] == (12, 12, 1) and len(calls) == 12
