"""Options of ``pert serve`` (kept apart from the server so that ``pert --help`` needs no web stack)."""

from __future__ import annotations

from dataclasses import dataclass

from pert.config import DEVICE_HELP, PRECISION_HELP, PRECISIONS, check, field

TASKS = ("qa", "wor", "perlm")


@dataclass
class ServeConfig:
    qa: str | None = field(None, help="reading-comprehension model folder (fine-tuned on cmrc2018/drcd/squad)")
    wor: str | None = field(None, help="word-order restoration model folder (fine-tuned with --task wor)")
    perlm: str | None = field(None, help="pre-trained PERT folder with its PerLM head (the pointer panel)")
    host: str = field("127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    port: int = field(8000, help="TCP port")
    device: str = field("auto", help=DEVICE_HELP)
    precision: str = field("auto", choices=PRECISIONS, help=PRECISION_HELP)
    runtime: str = field("auto", choices=("auto", "torch", "onnx"),
                         help="qa and wor models: auto (a checked int8 export beside the folder on the CPU, "
                         "see `pert qa --help`), torch, or onnx for folders from `pert export onnx`; the PerLM "
                         "panel always runs torch")
    max_batch: int = field(32, help="most questions/sentences in one model call (1: no batching across requests)")
    batch_wait_ms: float = field(5.0, help="how long the first request of a batch waits for others (ms)")
    max_items: int = field(64, help="most questions or sentences in one request (beyond: 413)")
    max_chars: int = field(20000, help="most characters in one question, context or sentence (beyond: 413)")
    max_body_bytes: int = field(2_000_000, help="largest request body in bytes (beyond: 413)")
    segmenter: str = field("rjieba", help="Chinese word segmenter of the PerLM panel's N-gram shuffle")
    max_connections: int = field(1000, help="most open connections; past it /healthz still answers, other "
                                 "requests get 503 and the connection closes")
    request_timeout: float = field(10.0, help="seconds a connection has to send a whole request (idle and "
                                   "half-sent connections are closed, a stalled body gets 408)")
    keep_alive: float = field(5.0, help="seconds an idle keep-alive connection stays open between requests")
    drain_seconds: float = field(10.0, help="on SIGTERM/Ctrl-C: requests in a model call finish, queued ones are "
                                 "answered 503 after this many seconds, new ones at once")

    def __post_init__(self) -> None:
        check(any(getattr(self, t) for t in TASKS), "qa", "or --wor or --perlm: give at least one model to serve")
        check(0 <= self.port <= 65535, "port", "must be between 0 and 65535")
        check(self.precision in PRECISIONS, "precision", f"must be one of {', '.join(PRECISIONS)}")
        for name in ("request_timeout", "keep_alive", "drain_seconds"):
            check(getattr(self, name) > 0, name, "must be > 0")
        for name in ("max_batch", "max_items", "max_chars", "max_body_bytes", "max_connections"):
            check(getattr(self, name) >= 1, name, "must be at least 1")
        check(self.batch_wait_ms >= 0, "batch_wait_ms", "must be >= 0")
        check(self.runtime in ("auto", "torch", "onnx"), "runtime", "must be auto, torch or onnx")
