"""TensorBoard scalars for both training loops, written without importing TensorFlow."""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path


class ScalarWriter:
    """``add_scalar(tag, value, step)`` into a TensorBoard event file in ``logdir``.

    TensorBoard does its file I/O through TensorFlow when TensorFlow is installed (the `tf` extra is): seconds
    of start-up and a console banner. Its marker module ``tensorboard.compat.notf`` selects its own stub.
    """

    def __init__(self, logdir: str | Path):
        sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self._writer = EventFileWriter(str(logdir))

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary

        summary = Summary(value=[Summary.Value(tag=tag, simple_value=float(value))])
        self._writer.add_event(Event(wall_time=time.time(), step=step, summary=summary))

    def close(self) -> None:
        self._writer.close()
