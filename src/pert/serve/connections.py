"""Connection guards of ``pert serve``: what no client can hold, and how the server drains when it stops.

uvicorn's HTTP/1.1 protocol (h11) with three additions:

- **a request deadline**: from the moment a connection opens (or its previous response ends), the next request
  must arrive whole within ``request_timeout`` seconds. An idle or half-sent connection is closed (a body that
  stalls gets 408 first); a request that has arrived is never cut while the model works on it.
- **a bound on open connections**: past ``max_connections`` a new connection gets ``busy_seconds`` to send its
  request; ``GET /healthz`` is answered as usual, anything else gets 503 with ``{"error": ...}`` and the
  connection closes. So idle sockets cannot exhaust the process's file descriptors and health checks keep
  answering while the bound is hit.
- **a drain deadline** (``DrainingServer``): on SIGTERM or Ctrl-C the server stops accepting, requests already
  in a model call finish, queued ones are answered 503 once ``drain_seconds`` have passed, and new requests on
  open connections get 503 at once. No request is answered 500 because the server stopped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int = 1000
    request_timeout: float = 10.0
    busy_seconds: float = 1.0


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


def guarded_protocol(limits: ConnectionLimits) -> type[H11Protocol]:
    """An h11 protocol class that enforces ``limits`` (uvicorn takes the class as ``Config(http=...)``)."""

    class GuardedH11Protocol(H11Protocol):
        _timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.app_state.setdefault("connections", self.connections)  # /healthz reports how many are open
            if len(self.connections) > limits.max_connections:
                self.app = _busy(self.app, f"server busy: {limits.max_connections} connections open "
                                           "(--max-connections); try again shortly")
                self._arm(limits.busy_seconds)
            else:
                self._arm(limits.request_timeout)

        def connection_lost(self, exc: Exception | None) -> None:
            if self._timer is not None:
                self._timer.cancel()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm(limits.request_timeout)

        def _arm(self, seconds: float) -> None:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.loop.call_later(seconds, self._expire)

        def _expire(self) -> None:
            if self.transport.is_closing():
                return
            working = self.cycle is not None and not self.cycle.response_complete
            if working and self.conn.their_state is h11.DONE:
                return  # the request is in: the app answers it, however long the model takes
            if working and self.conn.their_state is h11.SEND_BODY and not self.cycle.response_started:
                body = error_body(f"request body not received within {limits.request_timeout:g} s")
                try:
                    self.transport.write(self.conn.send(h11.Response(status_code=408, headers=[
                        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                        (b"connection", b"close")])))
                    self.transport.write(self.conn.send(h11.Data(data=body)))
                    self.transport.write(self.conn.send(h11.EndOfMessage()))
                except h11.LocalProtocolError:
                    pass
            self.transport.close()

    return GuardedH11Protocol


async def send_error(send: Any, status: int, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    """An ASGI response ``{"error": message}``: the one error shape of the server, below FastAPI too."""
    body = error_body(message)
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


def _busy(app: Any, message: str) -> Callable:
    """The ASGI app of a connection over the bound: /healthz as usual, 503 for everything else."""

    async def busy(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/healthz":
            return await app(scope, receive, send)
        await send_error(send, 503, message, ((b"connection", b"close"), (b"retry-after", b"1")))

    return busy


class DrainingServer(uvicorn.Server):
    """A uvicorn server that calls ``on_drain()`` on the event loop as soon as it is told to stop."""

    def __init__(self, config: uvicorn.Config, on_drain: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_drain, self._draining = on_drain, False

    def handle_exit(self, sig: int, frame: Any) -> None:
        if not self._draining:
            self._draining = True
            try:
                asyncio.get_running_loop().call_soon_threadsafe(self._on_drain)
            except RuntimeError:  # no loop running yet: nothing to drain
                pass
        super().handle_exit(sig, frame)


def raise_file_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit; returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft
