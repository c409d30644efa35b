"""Progress that shows wherever the output goes: tqdm's bar on a terminal, and where stderr is not a terminal (a
log file, a pipe, a job scheduler) a plain log line every ``PERT_PROGRESS_SECONDS`` (default 30) seconds and one
at the end, so that a long fine-tuning run written to a file is never silent.

    for batch in progress(batches, desc="predict"): ...
    bar = progress(total=steps, desc="sst2 seed 1"); bar.update(1); bar.set_postfix(loss="0.41"); bar.close()
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

log = logging.getLogger("pert.progress")


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", initial: int = 0,
             unit: str = "it", disable: bool = False, every: float | None = None, **tqdm_kw: Any) -> Any:
    """A tqdm bar on a terminal, else a :class:`LogProgress` with the same interface; nothing when ``disable``."""
    from tqdm.auto import tqdm

    if disable or (sys.stderr.isatty() and not every):
        return tqdm(iterable, total=total, desc=desc, initial=initial, unit=unit, disable=disable, **tqdm_kw)
    return LogProgress(iterable, total=total, desc=desc, initial=initial, unit=unit, every=every)


def _duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class LogProgress:
    """The part of tqdm's interface pert uses (update, n, set_postfix, close, iteration, ``with``), as log lines:
    ``sst2 seed 1: 120/360 steps (33%), 2.10 steps/s, 57s elapsed, 1m54s left, loss=0.4123``."""

    def __init__(self, iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
                 initial: int = 0, unit: str = "it", every: float | None = None):
        self.iterable, self.desc, self.unit = iterable, desc, unit.strip() or "it"
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.n, self.initial = total, initial, initial
        self.every = every if every else float(os.environ.get("PERT_PROGRESS_SECONDS", "30"))
        self.start = self.last = time.monotonic()
        self.postfix = ""
        self.closed = False

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        rate = (self.n - self.initial) / elapsed if elapsed > 0 else 0.0
        done = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        parts = [f"{done} {self.unit}" + (f" ({100 * self.n / self.total:.0f}%)" if self.total else ""),
                 f"{rate:.2f} {self.unit}/s", f"{_duration(elapsed)} elapsed"]
        if self.total and rate > 0 and self.n < self.total:
            parts.append(f"{_duration((self.total - self.n) / rate)} left")
        return f"{self.desc + ': ' if self.desc else ''}{', '.join(parts)}" + (f", {self.postfix}" if self.postfix
                                                                                  else "")

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            log.info(self.line())

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in {**(ordered_dict or {}), **kwargs}.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s

    def write(self, s: str) -> None:
        log.info(s)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if time.monotonic() - self.start >= self.every:  # short work needs no closing line
                log.info(self.line())

    def __iter__(self) -> Iterator:
        for item in self.iterable or ():
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
