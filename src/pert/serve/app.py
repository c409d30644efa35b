"""The HTTP server of ``pert serve``: a JSON API and a web page over the loaded models.

    pert serve --qa runs/cmrc/seed-1/best --wor runs/wor/seed-1/best --perlm pert-base --port 8000

Endpoints: ``POST /v1/qa``, ``POST /v1/restore``, ``POST /v1/perlm``, ``GET /v1/models``, ``GET /healthz``,
the OpenAPI description at ``/openapi.json``, and the page at ``/``. Each model
has a micro-batcher (``pert.serve.batcher``): requests arriving together share one model call. Inputs are
bounded (body bytes, texts per request, characters per text): beyond a bound the answer is 413 with a
one-line message; malformed input (not JSON, too deeply nested, invalid Unicode, wrong fields) gets 4xx; every
error body is ``{"error": "..."}``. Connections are bounded in number and time, and SIGTERM or Ctrl-C drains
within a deadline (``pert.serve.connections``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from pert.config import ConfigError
from pert.serve.batcher import MicroBatcher
from pert.serve.config import ServeConfig
from pert.serve.connections import send_error

log = logging.getLogger(__name__)


def load_models(cfg: ServeConfig) -> dict[str, Any]:
    """The models named in ``cfg``, loaded once: ``{"qa": QuestionAnswerer, "wor": Restorer, "perlm":
    PointerScorer}`` (only those given). The one place where serve loads models."""
    models: dict[str, Any] = {}
    if cfg.qa:
        from pert.qa import QuestionAnswerer

        models["qa"] = QuestionAnswerer(cfg.qa, device=cfg.device, precision=cfg.precision,
                                        batch_size=cfg.max_batch, runtime=cfg.runtime)
    if cfg.wor:
        from pert.wor.restore import Restorer

        models["wor"] = Restorer(cfg.wor, device=cfg.device, precision=cfg.precision, batch_size=cfg.max_batch,
                                 runtime=cfg.runtime)
    if cfg.perlm:
        from pert.serve.perlm import PointerScorer

        models["perlm"] = PointerScorer(cfg.perlm, device=cfg.device, precision=cfg.precision, segmenter=cfg.segmenter)
    return models


# ---- request and response bodies (the OpenAPI description is generated from them) ----

class QAItem(BaseModel):
    question: str = Field(description="the question")
    context: str = Field(description="the passage that holds the answer")


class QARequest(BaseModel):
    """One question (``question`` + ``context``) or many (``items``)."""

    question: str | None = None
    context: str | None = None
    items: list[QAItem] | None = None


class AnswerOut(BaseModel):
    text: str = Field(description="the answer: context[start:end]; empty when the model finds none")
    score: float = Field(description="the model's probability of the span among its n-best spans")
    start: int
    end: int


class QAResponse(BaseModel):
    answers: list[AnswerOut]


class RestoreRequest(BaseModel):
    """Sentences whose word order to restore (``sentence`` for one)."""

    sentences: list[str] | None = None
    sentence: str | None = None


class RestorationOut(BaseModel):
    input: str
    text: str = Field(description="the restored sentence: exactly the input's characters, reordered")
    moved: list[tuple[int, int]] = Field(description="character spans of `text` that moved")
    input_moved: list[tuple[int, int]] = Field(description="character spans of `input` whose words moved")
    tokens: list[str]


class RestoreResponse(BaseModel):
    restorations: list[RestorationOut]


class ShuffleOptions(BaseModel):
    """PerLM's corruption as in pre-training (``pert.objectives``): whole-word N-gram units are selected and
    shuffled. Unset options take pre-training's defaults (``pert pretrain --help``)."""

    seed: int = 0
    select_ratio: float | None = None
    ngram_probs: list[float] | None = None
    shuffle_ratio: float | None = None
    scope: str | None = None
    max_predictions: int | None = None


class PerlmRequest(BaseModel):
    """A sentence and a permutation (shuffled position k holds token permutation[k]), or ``shuffle``
    options to let PerLM's own corruption shuffle it (the default when no permutation is given)."""

    sentence: str
    permutation: list[int] | None = None
    shuffle: ShuffleOptions | None = None
    top_k: int = Field(3, ge=1, le=20, description="guesses returned per position")


class Guess(BaseModel):
    position: int
    token: str
    probability: float


class PointerOut(BaseModel):
    token: str = Field(description="the token of the original sentence at this position")
    truth: int = Field(description="where it stands in the shuffled sentence")
    kind: str = Field(description="shuffled, kept (selected, left in place) or unselected")
    moved: bool
    guesses: list[Guess]
    correct: bool = Field(description="the top guess is the truth")


class PerlmResponse(BaseModel):
    tokens: list[str]
    permutation: list[int]
    shuffled_text: str
    shuffled_spans: list[tuple[int, int]]
    positions: list[PointerOut]
    moved: int
    moved_accuracy: float | None
    accuracy: float


# ---- the app ----

class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets 413 before anything parses it, whether it
    declares its length or comes in chunks (a chunked body is read up to the limit first, then replayed)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await send_error(send, 413, f"request body of {int(declared)} bytes; at most {self.limit}")
        if declared is not None:  # h11 holds the body to its declared length
            return await self.app(scope, receive, send)
        messages, seen = [], 0
        while True:
            message = await receive()
            messages.append(message)
            seen += len(message.get("body", b""))
            if seen > self.limit:
                return await send_error(send, 413, f"request body over {self.limit} bytes")
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
        replay = [{"type": "http.request", "body": body, "more_body": False}] if messages[-1]["type"] == \
            "http.request" else messages

        async def replayed() -> dict:
            return replay.pop(0) if replay else await receive()

        await self.app(scope, replayed, send)


def _bounded(cfg: ServeConfig, texts: list[tuple[str, str]]) -> None:
    """413 naming the field when a request holds too many texts or too long a text; 422 for empty ones."""
    if not texts:
        raise HTTPException(422, "nothing to do: the request holds no text")
    for name, text in texts:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise HTTPException(422, f"{name}: not valid Unicode (a lone surrogate at character {e.start})") from None
        if len(text) > cfg.max_chars:
            raise HTTPException(413, f"{name}: {len(text)} characters; at most {cfg.max_chars} (--max-chars)")
        if not text.strip():
            raise HTTPException(422, f"{name}: empty")


def _count(cfg: ServeConfig, field_name: str, n: int) -> None:
    if n > cfg.max_items:
        raise HTTPException(413, f"{field_name}: {n} in one request; at most {cfg.max_items} (--max-items)")


def create_app(cfg: ServeConfig, models: dict[str, Any]) -> FastAPI:
    """The FastAPI app serving ``models`` (from ``load_models``)."""
    top_k_max = 20

    def run_qa(items: list[tuple[str, str]]) -> list[Any]:
        return models["qa"](items)

    def run_wor(items: list[str]) -> list[Any]:
        return models["wor"].restore(items)

    def run_perlm(items: list[tuple[Any, int]]) -> list[Any]:
        out = models["perlm"].score([p for p, _ in items], top_k=top_k_max)
        for r, (_, k) in zip(out, items, strict=True):
            for pos in r["positions"]:
                pos["guesses"] = pos["guesses"][:k]
        return out

    fns = {"qa": run_qa, "wor": run_wor, "perlm": run_perlm}
    batchers = {t: MicroBatcher(fns[t], max_items=cfg.max_batch, wait_ms=cfg.batch_wait_ms, name=t)
                for t in models}
    draining: dict[str, Any] = {"since": None, "rejected": 0}

    def start_drain() -> None:
        """Called on the event loop when the server is told to stop (``DrainingServer``)."""
        draining["since"] = asyncio.get_running_loop().time()

        def reject() -> None:
            for b in batchers.values():
                draining["rejected"] += b.reject_waiting(Draining(
                    f"the server is shutting down: not run within its {cfg.drain_seconds:g} s drain deadline"))
            if draining["rejected"]:
                log.warning("drain deadline: %d queued requests answered 503", draining["rejected"])

        asyncio.get_running_loop().call_later(cfg.drain_seconds, reject)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        for b in batchers.values():
            b.start()
        yield
        for b in batchers.values():
            await b.stop()

    # No /docs page: FastAPI's loads its scripts from a CDN. The description itself is at /openapi.json.
    app = FastAPI(title="pert serve", version=_version(), lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Reading comprehension, word-order restoration and PerLM pointers of PERT models.")

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        if first.get("type") == "json_invalid":
            message = f"request body: not valid JSON ({(first.get('ctx') or {}).get('error', 'decode error')})"
        else:
            where = "".join(f"[{x}]" if isinstance(x, int) else f".{x}" for x in first.get("loc", ())[1:])
            message = f"{where.lstrip('.') or 'request body'}: {first.get('msg', 'invalid request')}"
        return JSONResponse({"error": message,
                             "detail": json.loads(json.dumps(errors, default=str))}, status_code=422)

    @app.exception_handler(StarletteHTTPException)  # FastAPI's own (body parsing, 404, 405) take the same shape
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail)
        if exc.status_code == 400 and isinstance(exc.__cause__, RecursionError):
            message = "request body: JSON nested too deeply"
        elif exc.status_code == 400 and exc.__cause__ is not None:
            message = f"request body: could not be read ({type(exc.__cause__).__name__})"
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)

    async def run(task: str, items: list[Any]) -> list[Any]:
        if task not in batchers:
            raise HTTPException(404, f"no {task} model loaded: start pert serve with --{task} MODEL")
        if draining["since"] is not None:
            raise HTTPException(503, "the server is shutting down; send the request again elsewhere or later",
                                headers={"connection": "close"})
        try:
            return await batchers[task].submit(items)
        except Draining as e:
            raise HTTPException(503, str(e), headers={"connection": "close"}) from None
        except (ValueError, ConfigError) as e:
            raise HTTPException(422, str(e)) from e
        except Exception as e:  # the model failed on this request: answer 500, keep serving
            log.exception("%s request failed", task)
            raise HTTPException(500, f"{task} model failed: {type(e).__name__}: {e}") from e

    @app.post("/v1/qa", response_model=QAResponse, summary="Answer questions about passages")
    async def qa(body: QARequest) -> QAResponse:
        if body.items is not None:
            if body.question is not None or body.context is not None:
                raise HTTPException(422, "give question and context, or items, not both")
            _count(cfg, "items", len(body.items))
            pairs = [(it.question, it.context) for it in body.items]
        elif body.question is not None and body.context is not None:
            pairs = [(body.question, body.context)]
        else:
            raise HTTPException(422, "give question and context (strings), or items: [{question, context}, ...]")
        _bounded(cfg, [(f"items[{i}].{k}" if body.items is not None else k, v)
                       for i, (q, c) in enumerate(pairs) for k, v in (("question", q), ("context", c))])
        answers = await run("qa", pairs)
        return QAResponse(answers=[AnswerOut(**asdict(a)) for a in answers])

    @app.post("/v1/restore", response_model=RestoreResponse, summary="Restore the word order of sentences")
    async def restore(body: RestoreRequest) -> RestoreResponse:
        if (body.sentences is None) == (body.sentence is None):
            raise HTTPException(422, "give sentences: [..] or sentence: \"..\" (one of them)")
        texts = body.sentences if body.sentences is not None else [body.sentence]
        _count(cfg, "sentences", len(texts))
        _bounded(cfg, [(f"sentences[{i}]" if body.sentences is not None else "sentence", t)
                       for i, t in enumerate(texts)])
        out = await run("wor", texts)
        return RestoreResponse(restorations=[
            RestorationOut(input=t, text=r.text, moved=r.moved, input_moved=r.input_moved, tokens=r.tokens)
            for t, r in zip(texts, out, strict=True)])

    @app.post("/v1/perlm", response_model=PerlmResponse, summary="Where does each token of a shuffled sentence "
              "belong? The PerLM pointer head's guesses against the truth")
    async def perlm(body: PerlmRequest) -> PerlmResponse:
        from pert.objectives.config import ObjectiveConfig

        if "perlm" not in models:
            raise HTTPException(404, "no perlm model loaded: start pert serve with --perlm MODEL")
        _bounded(cfg, [("sentence", body.sentence)])
        if body.permutation is not None and body.shuffle is not None:
            raise HTTPException(422, "give permutation or shuffle, not both")
        opts = body.shuffle or ShuffleOptions()
        try:
            objective = ObjectiveConfig(**opts.model_dump(exclude={"seed"}, exclude_none=True))
            probe = models["perlm"].probe(body.sentence, body.permutation, objective, opts.seed)
        except (ValueError, ConfigError) as e:
            raise HTTPException(422, str(e).replace("--", "shuffle.").replace("-", "_")
                                if isinstance(e, ConfigError) else str(e)) from e
        (result,) = await run("perlm", [(probe, body.top_k)])
        return PerlmResponse(**result)

    @app.get("/v1/models", summary="The loaded models and the server's limits")
    async def list_models() -> dict[str, Any]:
        return {"models": [_describe(t, m) for t, m in models.items()],
                "limits": {"max_items": cfg.max_items, "max_chars": cfg.max_chars,
                           "max_body_bytes": cfg.max_body_bytes},
                "batching": {"max_batch": cfg.max_batch, "batch_wait_ms": cfg.batch_wait_ms}}

    @app.get("/healthz", summary="Liveness, requests in flight and batching counters per model")
    async def healthz(request: Request) -> dict[str, Any]:
        open_connections = (request.scope.get("state") or {}).get("connections")
        return {"status": "draining" if draining["since"] is not None else "ok",
                "in_flight": sum(b.stats.in_flight for b in batchers.values()),
                "connections": None if open_connections is None else len(open_connections),
                "limits": {"max_connections": cfg.max_connections, "request_timeout": cfg.request_timeout},
                "models": {t: asdict(b.stats) for t, b in batchers.items()}}

    static = resources.files("pert.serve") / "static"

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(str(static / "index.html"), media_type="text/html")

    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    app.add_middleware(BodyLimit, limit=cfg.max_body_bytes)
    app.state.start_drain = start_drain
    return app


class Draining(Exception):
    """A queued request that the server will not run: it is shutting down."""


def _describe(task: str, model: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"task": task, "name": Path(str(model.model_dir)).name, "path": str(model.model_dir)}
    if task == "qa":
        d.update(max_seq_len=model.max_seq_len, doc_stride=model.doc_stride, runtime=model.runtime)
    elif task == "wor":
        d.update(max_seq_len=model.max_seq_len, runtime=model.runtime)
    return d


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pert")
    except PackageNotFoundError:
        return "0"


def serve(cfg: ServeConfig) -> None:
    """Load the models, then serve until Ctrl-C or SIGTERM, then drain (``pert.serve.connections``)."""
    import signal

    import uvicorn

    from pert.serve.connections import ConnectionLimits, DrainingServer, guarded_protocol, raise_file_limit

    models = load_models(cfg)
    app = create_app(cfg, models)
    files = raise_file_limit()
    if cfg.max_connections > files - 100:
        raise ValueError(f"--max-connections {cfg.max_connections} needs more than this process's limit of {files} "
                         "open files (ulimit -n)")
    limits = ConnectionLimits(max_connections=cfg.max_connections, request_timeout=cfg.request_timeout)
    # uvicorn waits for running requests this long after the drain deadline before cancelling them: a model call
    # already running then finishes (a batch is bounded by --max-batch and --max-chars)
    server = DrainingServer(uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="info",
                                           http=guarded_protocol(limits), timeout_keep_alive=cfg.keep_alive,
                                           timeout_graceful_shutdown=cfg.drain_seconds + 60, access_log=False,
                                           backlog=2048), on_drain=app.state.start_drain)
    # uvicorn re-raises the signal that stopped it once it has drained; by then there is nothing left to do.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    server.run()
    if not server.started:
        raise ValueError(f"could not listen on {cfg.host}:{cfg.port} (in use, or not an address of this machine)")
