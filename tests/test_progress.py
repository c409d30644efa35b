"""Progress reaches a log file: plain lines at an interval and at the end when stderr is not a terminal."""

from __future__ import annotations

import logging

from pert.progress import LogProgress, progress


def test_not_a_terminal_gives_log_lines(caplog, monkeypatch):
    monkeypatch.setenv("PERT_PROGRESS_SECONDS", "0")  # a line at every update
    caplog.set_level(logging.INFO, logger="pert.progress")
    bar = progress(total=4, desc="sst2 seed 1", unit="steps")  # pytest's stderr is not a terminal
    assert isinstance(bar, LogProgress)
    bar.update(1)
    bar.set_postfix(loss="0.4123")
    bar.update(3)
    bar.close()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("sst2 seed 1: 1/4 steps (25%), ") and "left" in lines[0]
    assert lines[1].startswith("sst2 seed 1: 4/4 steps (100%), ") and lines[1].endswith(", loss=0.4123")
    assert lines[2] == lines[1] or lines[2].startswith("sst2 seed 1: 4/4 steps (100%)")  # the closing line
    assert list(progress(range(3), desc="predict")) == [0, 1, 2]


def test_quiet_between_intervals(caplog, monkeypatch):
    monkeypatch.setenv("PERT_PROGRESS_SECONDS", "3600")
    caplog.set_level(logging.INFO, logger="pert.progress")
    with progress(desc="prepare", unit=" chars") as bar:
        bar.update(10)
    assert bar.n == 10 and caplog.records == []  # short work: no line at all
