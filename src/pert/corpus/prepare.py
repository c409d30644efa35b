"""`pert prepare`: raw text -> token ids, whole-word starts and document offsets, plus a manifest.

Output folder::

    tokens.bin        token ids (uint16, or int32 for vocabularies over 65,535), documents back to back,
                      each followed by [SEP]
    word_starts.bin   uint8, 1 where a whole word starts ([SEP] is 0)
    doc_offsets.npy   int64, n_documents + 1 offsets into tokens.bin
    tokenizer/        the tokenizer used (vocab.txt, tokenizer_config.json)
    manifest.json     counts, tokenizer, segmenter, inputs, lines skipped and why

Documents are tokenised in chunks by a pool of processes with a bounded number of chunks in flight, so
memory stays flat however large the corpus. A chunk is handled with array operations, not a loop per token;
for Chinese, characters that BERT's tokenizer always makes tokens of their own (ideographs, punctuation) are
looked up in a table and only the runs between them go through ``tokenizers``: the same tokens, several times
faster. A process that cannot start, a segmenter that fails on a document and a process that dies all stop
the run at once with one line naming the cause (and file:line).

The output is written to a temporary folder and renamed into place; the temporary folder is removed on any
failure, and an input without a single document is refused rather than written. A re-run with unchanged
inputs and options finds the manifest's fingerprint equal and does nothing. ``OUT.lock`` beside the folder
keeps a second run from writing into it at the same time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import multiprocessing as mp
import os
import shutil
import string
import time
import unicodedata
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import closing
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tokenizers import Tokenizer

import pert
from pert.config import to_dict
from pert.corpus.config import PrepareConfig
from pert.corpus.read import Problems, iter_documents, list_files
from pert.lock import locks_output
from pert.progress import progress

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from pert.text.segment import Segmenter

log = logging.getLogger(__name__)
FORMAT_VERSION = 1


# Per-process state of the tokenising workers. They get the tokenizer serialised and import only `tokenizers`
# (and the segmenter), not transformers: a worker's start-up is most of the time a small corpus takes.
_STATE: dict = {}


def _die_with_parent(parent: int) -> None:
    """Have the kernel end this process when the process that started it dies, even by kill -9 (Linux's
    parent-death signal), so that no tokenising process outlives a killed ``pert prepare``; elsewhere a no-op."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)


def _init_worker(tokenizer: str, sep: int, segmenter: str | None, dtype: str, parent: int | None = None) -> None:
    """Set up a tokenising process. A failure is kept and raised by the first ``_encode`` (so it reaches the
    parent as one exception) instead of killing the process, which a pool would restart or report without its
    cause."""
    if parent is not None:
        _die_with_parent(parent)
    try:
        backend = Tokenizer.from_str(tokenizer)
        pieces = backend.get_vocab(with_added_tokens=True)
        continuation = np.zeros(max(pieces.values()) + 1, dtype=bool)
        continuation[[i for t, i in pieces.items() if t.startswith("##")]] = True
        if segmenter:
            from pert.text.segment import get_segmenter
        _STATE.update(backend=backend, sep=sep, dtype=np.dtype(dtype), continuation=continuation,
                      segmenter=get_segmenter(segmenter) if segmenter else None,
                      alone=_alone_table(backend) if segmenter else None, error=None)
    except Exception as e:  # noqa: BLE001 - any failure, reported by _encode
        _STATE["error"] = f"{type(e).__name__}: {e}" if not isinstance(e, ValueError) else str(e)


class DocumentError(Exception):
    """Raised in a tokenising process: document ``index`` of the chunk made the segmenter fail."""

    def __init__(self, index: int, message: str):
        super().__init__(index, message)
        self.index, self.message = index, message


def _alone_table(backend: Tokenizer) -> np.ndarray | None:
    """Token id of each BMP character that BERT's tokenizer always makes a token of its own, whatever its
    neighbours (CJK ideographs and punctuation), -1 for every other character; None for a tokenizer that is not
    BERT's pipeline. Each candidate is checked by tokenising it between two letters: ``a?a``."""
    spec = json.loads(backend.to_str())
    norm, pre, model = (spec.get(k) or {} for k in ("normalizer", "pre_tokenizer", "model"))
    if (norm.get("type"), pre.get("type"), model.get("type")) != ("BertNormalizer", "BertPreTokenizer", "WordPiece") \
            or not norm.get("handle_chinese_chars") or spec.get("truncation") or spec.get("padding"):
        return None
    letter = backend.encode("a", add_special_tokens=False).ids
    reserved = set("".join(t.content for t in backend.get_added_tokens_decoder().values()))  # [SEP] etc.
    candidates = [c for c in range(0x10000)
                  if (0x3400 <= c <= 0x4DBF or 0x4E00 <= c <= 0x9FFF or 0xF900 <= c <= 0xFAFF
                      or unicodedata.category(chr(c)).startswith("P") or chr(c) in string.punctuation)
                  and chr(c) not in reserved]
    if len(letter) != 1 or reserved & set(backend.normalizer.normalize_str("".join(map(chr, candidates)))):
        return None
    # all probes in one text, four characters apart: "a?a a?a ..."
    enc = backend.encode(" ".join(f"a{chr(c)}a" for c in candidates), add_special_tokens=False)
    ids = np.array(enc.ids, dtype=np.int64)
    start, end = np.array(enc.offsets, dtype=np.int64).reshape(-1, 2).T
    probe, at = np.divmod(start, 4)
    n = len(candidates)
    tokens = np.bincount(probe, minlength=n)
    single = end - start == 1
    outer = single & (ids == letter[0])
    ok = (tokens == 3) & (np.bincount(probe[outer & (at == 0)], minlength=n) == 1) \
        & (np.bincount(probe[outer & (at == 2)], minlength=n) == 1) \
        & (np.bincount(probe[single & (at == 1)], minlength=n) == 1)
    middle = single & (at == 1) & ok[probe]
    table = np.full(0x10000, -1, dtype=np.int64)
    table[np.asarray(candidates)[probe[middle]]] = ids[middle]
    return table


def _encode(texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token ids (each document + [SEP]), word starts and per-document lengths of a chunk.

    The whole chunk is handled with a few array operations rather than a loop per token: a ``##``
    continuation is a lookup by id, and (Chinese) a token starts a word when its first character falls in
    another segmenter word than the previous token's (``word_starts`` of ``pert.text.tokenizer``, chunk-wide).
    English needs no offsets, so it uses the tokenizer's faster encoding without them.
    """
    if _STATE.get("error"):
        raise ValueError(f"a tokenising process could not start: {_STATE['error']}")
    segmenter, sep = _STATE["segmenter"], _STATE["sep"]
    if segmenter is None:
        ids, sizes, _ = _tokenize(texts, offsets=False)
        starts = ~_STATE["continuation"][ids]
    else:
        if _STATE["alone"] is not None:
            ids, sizes, first_char = _tokenize_cjk(texts)
        else:
            ids, sizes, first_char = _tokenize(texts, offsets=True)
            first_char += np.repeat(_starts(texts), sizes)
        starts = ~_STATE["continuation"][ids] & _new_words(texts, first_char, sizes, segmenter)
    ends = np.cumsum(sizes)[sizes > 0]  # a [SEP] after each document with tokens
    lengths = np.where(sizes > 0, sizes + 1, 0)
    return np.insert(ids, ends, sep), np.insert(starts, ends, False).view(np.uint8), lengths


def _tokenize(texts: list[str], offsets: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Token ids of the texts back to back, tokens per text, and (``offsets``) each token's first character
    in its text."""
    backend = _STATE["backend"]
    encodings = (backend.encode_batch if offsets else backend.encode_batch_fast)(texts, add_special_tokens=False)
    id_lists = [enc.ids for enc in encodings]
    sizes = np.fromiter(map(len, id_lists), dtype=np.int64, count=len(texts))
    n = int(sizes.sum())
    ids = np.fromiter(chain.from_iterable(id_lists), dtype=_STATE["dtype"], count=n)
    if not offsets:
        return ids, sizes, None
    pairs = chain.from_iterable(chain.from_iterable(enc.offsets for enc in encodings))
    return ids, sizes, np.fromiter(pairs, dtype=np.int64, count=2 * n)[::2].copy()


def _starts(texts: list[str]) -> np.ndarray:
    """Where each text starts when the texts are joined."""
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    return np.cumsum(lengths) - lengths


def _tokenize_cjk(texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``_tokenize(texts, offsets=True)``, faster: a character that is always a token of its own (most of
    Chinese text) is looked up in a table, and only the runs of other characters between them go through the
    tokenizer. A run never crosses a text's end."""
    joined = "".join(texts)
    code = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    alone = _STATE["alone"]
    token = np.where(code < len(alone), alone[np.minimum(code, len(alone) - 1)], -1)
    text_start = _starts(texts)
    in_run = token < 0
    cut = np.zeros(len(code) + 1, dtype=bool)
    cut[text_start] = cut[-1] = True
    run_start = np.flatnonzero(in_run & ~(np.r_[False, in_run[:-1]] & ~cut[:-1]))
    run_end = np.flatnonzero(in_run & ~(np.r_[in_run[1:], False] & ~cut[1:])) + 1
    runs = [joined[a:b] for a, b in zip(run_start.tolist(), run_end.tolist(), strict=True)]
    run_ids, run_sizes, run_first = _tokenize(runs, offsets=True)
    run_first += np.repeat(run_start, run_sizes)
    alone_at = np.flatnonzero(~in_run)
    first_char = np.concatenate([alone_at, run_first])
    order = np.argsort(first_char, kind="stable")
    ids = np.concatenate([token[alone_at].astype(_STATE["dtype"]), run_ids])[order]
    first_char = first_char[order]
    text_of = np.searchsorted(text_start, first_char, side="right") - 1
    return ids, np.bincount(text_of, minlength=len(texts)), first_char


def _new_words(texts: list[str], first_char: np.ndarray, sizes: np.ndarray, segmenter: Segmenter) -> np.ndarray:
    """Per token of the chunk: whether its first character is in another segmenter word than the previous
    token's, every text's first token included. The texts are laid end to end, each spanning at least its
    length and its words' (a segmenter may not return the text exactly), so one search over all word ends
    gives every token's word."""
    lens: list[int] = []
    base = np.zeros(len(texts), dtype=np.int64)  # where each text starts when laid end to end
    pos = 0
    for k, text in enumerate(texts):
        base[k] = pos
        if not sizes[k]:
            continue
        words = _word_lengths(segmenter, text, k)
        span = max(len(text), sum(words))
        words.append(span - sum(words))  # pads the text to its span
        lens += words
        pos += span
    n = len(first_char)
    if not n:
        return np.zeros(0, dtype=bool)
    word = np.searchsorted(np.cumsum(lens), first_char + np.repeat(base - _starts(texts), sizes), side="right")
    new = np.empty(n, dtype=bool)
    new[1:] = word[1:] != word[:-1]
    new[(np.cumsum(sizes) - sizes)[sizes > 0]] = True
    return new


def _word_lengths(segmenter: Segmenter, text: str, index: int) -> list[int]:
    """Lengths of the segmenter's words of ``text``; a segmenter that fails or returns no list of strings
    raises ``DocumentError`` for document ``index`` of the chunk."""
    try:
        words = segmenter(text)
        if words is None or isinstance(words, str):
            raise TypeError(f"returned {type(words).__name__}, not a list of words")
        return list(map(len, words))
    except Exception as e:  # noqa: BLE001 - a user's segmenter may raise anything
        raise DocumentError(index, f"{type(e).__name__}: {e}") from None


def _chunks(cfg: PrepareConfig, problems: Problems, stats: dict) -> Iterator[tuple[list[str], list[str]]]:
    """(texts, sources) of ``cfg.chunk_docs`` documents at a time."""
    chunk: list[str] = []
    sources: list[str] = []
    for doc in iter_documents(cfg.inputs, cfg.text_field, cfg.doc_sep, cfg.max_line_bytes, problems):
        chunk.append(doc.text)
        sources.append(doc.source)
        stats["chars"] += len(doc.text)
        if len(chunk) == cfg.chunk_docs:
            yield chunk, sources
            chunk, sources = [], []
    if chunk:
        yield chunk, sources


def fingerprint(cfg: PrepareConfig, vocab_sha: str) -> str:
    """Hash of the inputs (path, size, mtime) and every option that changes the output."""
    h = hashlib.sha256()
    for f in list_files(cfg.inputs):
        st = f.stat()
        h.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    opts = {k: v for k, v in to_dict(cfg).items() if k not in ("out", "workers", "force", "inputs")}
    h.update(json.dumps(opts, sort_keys=True).encode())
    h.update(vocab_sha.encode())
    return h.hexdigest()


@locks_output
def prepare(cfg: PrepareConfig) -> dict:
    """Tokenise the corpus into ``cfg.out``; returns the manifest."""
    from pert.hub import resolve_model
    from pert.text.segment import get_segmenter
    from pert.text.tokenizer import load_tokenizer, vocab_sha256

    tok = load_tokenizer(resolve_model(cfg.vocab, cfg.revision), cfg.lowercase)  # checks the vocabulary file itself
    vocab_sha = vocab_sha256(tok)
    segmenter = cfg.segmenter if cfg.lang == "zh" else None
    if segmenter:
        get_segmenter(segmenter)  # fail now, not inside a worker
    out = Path(cfg.out)
    fp = fingerprint(cfg, vocab_sha)
    manifest_file = out / "manifest.json"
    if manifest_file.is_file() and not cfg.force:
        old = json.loads(manifest_file.read_text("utf-8"))
        if old.get("fingerprint") == fp:
            log.info("%s is up to date (same inputs and options); nothing to do", out)
            return old

    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        tmp.mkdir(parents=True)
        manifest = _write(cfg, tok, tmp, {"vocab_sha": vocab_sha, "source": Path(cfg.vocab).name, "fingerprint": fp})
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if e.errno is not None and (e.filename is None or str(e.filename).startswith(str(tmp))):
            # writing the output (ENOSPC, EDQUOT, EIO...): name the folder the user asked for, not .tmp
            raise OSError(e.errno, f"{os.strerror(e.errno)}: writing {out}; nothing was written") from None
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    skipped = sum(manifest["skipped"]["counts"].values())
    log.info("%d documents, %d tokens, %d characters in %.1fs (%.0f chars/s); %d lines skipped or changed",
             manifest["documents"], manifest["tokens"], manifest["characters"], manifest["seconds"],
             manifest["chars_per_second"], skipped)
    return manifest


def _write(cfg: PrepareConfig, tok: PreTrainedTokenizerBase, tmp: Path, vocab: dict) -> dict:
    """Tokenise the corpus into the (empty) folder ``tmp``; returns the manifest written there."""
    from pert.text.tokenizer import save_tokenizer

    dtype = np.uint16 if len(tok) <= np.iinfo(np.uint16).max else np.int32
    segmenter = cfg.segmenter if cfg.lang == "zh" else None
    problems, stats = Problems(), {"chars": 0}
    workers = cfg.workers or os.cpu_count() or 1
    t0 = time.perf_counter()
    n_tokens = n_docs = 0
    init_args = (tok.backend_tokenizer.to_str(), tok.sep_token_id, segmenter, np.dtype(dtype).name)
    with open(tmp / "tokens.bin", "wb") as f_ids, open(tmp / "word_starts.bin", "wb") as f_ws, \
            open(tmp / "doc_lengths.tmp", "wb") as f_len, \
            progress(unit=" chars", unit_scale=True, desc="prepare", mininterval=1.0) as bar, \
            closing(_run(_chunks(cfg, problems, stats), workers, init_args, segmenter)) as results:
        for ids, ws, lengths in results:
            f_ids.write(ids.tobytes())
            f_ws.write(ws.tobytes())
            f_len.write(lengths[lengths > 0].tobytes())
            n_tokens += len(ids)
            n_docs += int((lengths > 0).sum())
            empty = int((lengths == 0).sum())
            if empty:
                problems.counts["no_tokens_skipped"] += empty
            bar.update(stats["chars"] - bar.n)
    if not n_docs:
        counts = ", ".join(f"{reason.replace('_', ' ')}: {n}" for reason, n in sorted(problems.counts.items()))
        raise ValueError(f"{', '.join(map(str, cfg.inputs))}: no document with any token to prepare"
                         + (f" ({counts})" if counts else " (only empty lines)") + f"; nothing written to {cfg.out}")
    _write_offsets(tmp / "doc_lengths.tmp", tmp / "doc_offsets.npy", n_docs)
    (tmp / "doc_lengths.tmp").unlink()
    save_tokenizer(tok, tmp / "tokenizer")
    elapsed = time.perf_counter() - t0
    manifest = {
        "format_version": FORMAT_VERSION,
        "pert_version": pert.__version__,
        "lang": cfg.lang,
        "documents": n_docs,
        "tokens": int(n_tokens),
        "characters": int(stats["chars"]),
        "dtype": np.dtype(dtype).name,
        "tokenizer": {"vocab_size": len(tok), "vocab_sha256": vocab["vocab_sha"],
                      "do_lower_case": bool(tok.do_lower_case), "source": vocab["source"]},
        "segmenter": segmenter,
        "special_ids": {"cls": tok.cls_token_id, "sep": tok.sep_token_id, "pad": tok.pad_token_id,
                        "mask": tok.mask_token_id, "unk": tok.unk_token_id},
        "inputs": [{"file": f.name, "bytes": f.stat().st_size} for f in list_files(cfg.inputs)],
        "skipped": problems.as_dict(),
        "seconds": round(elapsed, 2),
        "chars_per_second": round(stats["chars"] / max(elapsed, 1e-9)),
        "options": {k: v for k, v in to_dict(cfg).items() if k not in ("out", "inputs", "force")},
        "fingerprint": vocab["fingerprint"],
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    return manifest


def _write_offsets(lengths_file: Path, out_file: Path, n_docs: int, block: int = 1 << 20) -> None:
    """``doc_offsets.npy`` (0, then the running sum of the document lengths), streamed in blocks: nothing in
    memory grows with the corpus, and a full disk is an OSError (a memory map would die of SIGBUS)."""
    with open(lengths_file, "rb") as f_in, open(out_file, "wb") as f_out:
        np.lib.format.write_array_header_1_0(f_out, {"descr": "<i8", "fortran_order": False, "shape": (n_docs + 1,)})
        total = np.zeros(1, dtype=np.int64)
        f_out.write(total.tobytes())
        while len(lengths := np.fromfile(f_in, dtype=np.int64, count=block)):
            sums = np.cumsum(lengths) + total[0]
            f_out.write(sums.tobytes())
            total[0] = sums[-1]


def _located(call: Callable[[], tuple], sources: list[str], segmenter: str | None) -> tuple:
    """``call()``, with a segmenter's failure on a document named by its file:line."""
    try:
        return call()
    except DocumentError as e:
        raise ValueError(f"{sources[e.index]}: segmenter {segmenter!r} failed on this document: "
                         f"{e.message}") from None


def _run(chunks: Iterator[tuple[list[str], list[str]]], workers: int, init_args: tuple,
         segmenter: str | None) -> Iterator[tuple]:
    """Encode chunks in order, with at most 2 x workers chunks in flight. A process that cannot start or fails
    stops the run at once with one exception (``concurrent.futures`` reports a dead process, where
    ``multiprocessing.Pool`` would start another forever)."""
    if workers == 1:
        _init_worker(*init_args)
        for texts, sources in chunks:
            yield _located(lambda texts=texts: _encode(texts), sources, segmenter)
        return
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),  # fork would copy tokenizer threads
                               initializer=_init_worker, initargs=(*init_args, os.getpid()))
    try:
        pending: deque[tuple[Future, list[str]]] = deque()
        for texts, sources in chunks:
            pending.append((pool.submit(_encode, texts), sources))
            if len(pending) >= 2 * workers:
                future, where = pending.popleft()
                yield _located(future.result, where, segmenter)
        while pending:
            future, where = pending.popleft()
            yield _located(future.result, where, segmenter)
    except BrokenProcessPool:
        raise ChildProcessError("a tokenising process died (killed, or out of memory?); nothing was "
                                "written") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
