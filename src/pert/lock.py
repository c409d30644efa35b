"""One run per output folder: an exclusive lock on ``OUT.lock`` beside ``--out``, holding the owner's PID.

The lock is an ``fcntl.flock`` on that file, so the kernel drops it when its process dies however it dies
(kill -9 included): a lock file left by a dead process is simply taken over. It lies beside the folder, not
in it, because ``prepare`` replaces the whole folder. In a multi-process run (``accelerate launch``,
``torchrun``) only global rank 0 takes it: the ranks of one run share their folder.
"""

from __future__ import annotations

import fcntl
import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class OutputInUseError(OSError):
    """Another live process holds the lock of this output folder; the message names its PID."""


def lock_file(out: str | Path) -> Path:
    """Where the lock of output folder ``out`` lies: ``OUT.lock`` beside it."""
    out = Path(out)
    return out.with_name(out.name + ".lock")


@contextmanager
def output_lock(out: str | Path) -> Iterator[None]:
    """Hold the lock of output folder ``out`` for the ``with`` block; refuse at once if a live process holds it."""
    if int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    path = lock_file(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise OutputInUseError(f"{out} is in use by another pert run (PID {holder}, lock {path}); wait for "
                                   "it to end or choose another --out") from None
        # the previous holder may have removed the file between our open and our lock: lock the file on disk
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        os.close(fd)


def locks_output(fn: F) -> F:
    """Decorator: run ``fn(cfg, ...)`` holding the lock of ``cfg.out``."""

    @functools.wraps(fn)
    def wrapper(cfg: Any, *args: Any, **kwargs: Any) -> Any:
        with output_lock(cfg.out):
            return fn(cfg, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
