"""Requests that arrive together run as one model call: an asyncio micro-batcher per model.

Each request puts its items on a queue and awaits a future. One task per model takes the first waiting
request, keeps taking requests for ``wait_ms`` (or until ``max_items`` items are collected), then runs the
model on all their items in the model's own worker thread, so the event loop keeps serving meanwhile.
Requests that queue while the model runs form the next batch. If a batch raises, its requests run one by
one, so a request that breaks the model fails alone and the others still get their answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class _Request:
    items: list[Any]
    future: asyncio.Future


@dataclass
class BatchStats:
    """Counters of one batcher, reported by ``GET /healthz``."""

    requests: int = 0
    items: int = 0
    batches: int = 0
    failed_requests: int = 0
    largest_batch: int = 0
    in_flight: int = 0
    busy_seconds: float = field(default=0.0)


class MicroBatcher:
    """Batches calls of ``fn(items) -> results`` (one result per item, in order) across requests."""

    def __init__(self, fn: Callable[[list[Any]], Sequence[Any]], *, max_items: int = 32, wait_ms: float = 5.0,
                 name: str = "model") -> None:
        if max_items < 1:
            raise ValueError(f"max_items must be at least 1, got {max_items}")
        if wait_ms < 0:
            raise ValueError(f"wait_ms must be >= 0, got {wait_ms}")
        self.fn, self.max_items, self.wait = fn, max_items, wait_ms / 1000
        self.name = name
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Request] | None = None
        self._task: asyncio.Task | None = None
        self._pending: _Request | None = None  # a request taken that did not fit the last batch
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"pert-{name}")

    def start(self) -> None:
        """Start the batching task on the running event loop."""
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"batcher-{self.name}")

    async def stop(self) -> None:
        """Stop taking batches (requests still queued are cancelled) and release the worker thread."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        while self._queue is not None and not self._queue.empty():
            self._queue.get_nowait().future.cancel()
        self._executor.shutdown(wait=True)

    def reject_waiting(self, error: Exception) -> int:
        """Fail every request that waits for a model call (queued, not yet running) with ``error``; the batch
        that runs now finishes. Returns how many were rejected (a server's drain deadline)."""
        waiting = [self._pending] if self._pending is not None else []
        while self._queue is not None and not self._queue.empty():
            waiting.append(self._queue.get_nowait())
        self._pending = None
        rejected = 0
        for r in waiting:
            if not r.future.done():
                r.future.set_exception(error)
                rejected += 1
        return rejected

    async def submit(self, items: list[Any]) -> list[Any]:
        """The model's results for ``items``, computed together with other requests' items."""
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        if not items:
            return []
        future = asyncio.get_running_loop().create_future()
        self.stats.in_flight += 1
        try:
            await self._queue.put(_Request(list(items), future))
            return await future
        finally:
            self.stats.in_flight -= 1

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [self._pending or await self._queue.get()]
            self._pending = None
            n = len(batch[0].items)
            deadline = loop.time() + self.wait
            while n < self.max_items:
                try:
                    if self._queue.empty():
                        timeout = deadline - loop.time()
                        if timeout <= 0:
                            break
                        req = await asyncio.wait_for(self._queue.get(), timeout)
                    else:
                        req = self._queue.get_nowait()
                except asyncio.TimeoutError:
                    break
                if n + len(req.items) > self.max_items:
                    self._pending = req
                    break
                batch.append(req)
                n += len(req.items)
            batch = [r for r in batch if not r.future.done()]  # clients that went away, requests rejected
            if batch:
                await self._execute(batch)

    async def _execute(self, batch: list[_Request]) -> None:
        loop = asyncio.get_running_loop()
        items = [x for r in batch for x in r.items]
        t0 = time.perf_counter()
        error: Exception | None = None
        try:
            results = await loop.run_in_executor(self._executor, self.fn, items)
            if len(results) != len(items):
                raise RuntimeError(f"{self.name}: {len(results)} results for {len(items)} items")
        except Exception as e:
            error = e
        finally:
            self.stats.busy_seconds += time.perf_counter() - t0
        if error is not None and len(batch) > 1:
            # find the request that broke the batch: the others still get their answers
            log.warning("%s: a batch of %d requests failed (%s); running them one by one", self.name, len(batch),
                        error)
            for r in batch:
                await self._execute([r])
            return
        self.stats.batches += 1
        self.stats.requests += len(batch)
        self.stats.items += len(items)
        self.stats.largest_batch = max(self.stats.largest_batch, len(items))
        if error is not None:
            self.stats.failed_requests += 1
            if not batch[0].future.done():
                batch[0].future.set_exception(error)
            return
        start = 0
        for r in batch:
            if not r.future.done():
                r.future.set_result(list(results[start:start + len(r.items)]))
            start += len(r.items)
