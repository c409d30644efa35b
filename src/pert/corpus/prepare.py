"""`pert prepare`: raw text -> token ids, whole-word starts and document offsets, plus a manifest.

Output folder::

    tokens.bin        token ids (uint16, or int32 for vocabularies over 65,535), documents back to back,
                      each followed by [SEP]
    word_starts.bin   uint8, 1 where a whole word starts ([SEP] is 0)
    doc_offsets.npy   int64, n_documents + 1 offsets into tokens.bin
    tokenizer/        the tokenizer used (vocab.txt, tokenizer_config.json)
    manifest.json     counts, tokenizer, segmenter, inputs, lines skipped and why

Documents are tokenised in chunks by a pool of processes with a bounded number of chunks in flight, so
memory stays flat however large the corpus. The output is written to a temporary folder and renamed into
place; a re-run with unchanged inputs and options finds the manifest's fingerprint equal and does nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import shutil
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

import pert
from pert.config import check, field, to_dict
from pert.corpus.read import Problems, iter_documents, list_files
from pert.text.segment import get_segmenter
from pert.text.tokenizer import load_tokenizer, save_tokenizer, word_starts

log = logging.getLogger(__name__)
FORMAT_VERSION = 1


@dataclass
class PrepareConfig:
    out: str = field(None, help="output folder")
    vocab: str = field(None, help="vocab.txt or a model folder whose tokenizer to use")
    lang: str = field("zh", help="zh (words from a segmenter) or en (words from WordPiece continuations)")
    inputs: list[str] = field([], help="text files or folders (.txt, .jsonl, .gz)")
    segmenter: str = field("rjieba", help="Chinese segmenter: rjieba, jieba, char, or module:function")
    lowercase: bool | None = field(None, help="override the tokenizer's lower-casing")
    text_field: str = field("text", help="field holding the text in .jsonl records")
    doc_sep: str = field("line", help="'line': one document per line; 'blank': blank-line-separated")
    workers: int = field(0, help="tokenising processes (0: one per core)")
    chunk_docs: int = field(256, help="documents per work unit")
    max_line_bytes: int = field(1 << 20, help="longer lines are cut to this many bytes (and counted)")
    force: bool = field(False, help="rebuild even when the output is up to date")

    def __post_init__(self) -> None:
        check(bool(self.out), "out", "is required: the output folder")
        check(bool(self.vocab), "vocab", "is required: a vocab.txt or a model folder")
        check(self.lang in ("zh", "en"), "lang", f"must be zh or en, not {self.lang!r}")
        check(self.doc_sep in ("line", "blank"), "doc_sep", f"must be line or blank, not {self.doc_sep!r}")
        check(self.workers >= 0, "workers", "must be >= 0")
        check(self.chunk_docs >= 1, "chunk_docs", "must be >= 1")
        check(self.max_line_bytes >= 1024, "max_line_bytes", "must be >= 1024")
        check(bool(self.inputs), "inputs", "needs at least one file or folder")


# Per-process state of the tokenising workers.
_STATE: dict = {}


def _init_worker(vocab: str, lowercase: bool | None, segmenter: str | None) -> None:
    tok = load_tokenizer(vocab, lowercase)
    _STATE["backend"] = tok.backend_tokenizer
    _STATE["sep"] = tok.sep_token_id
    _STATE["segmenter"] = get_segmenter(segmenter) if segmenter else None


def _encode(texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token ids (each document + [SEP]), word starts and per-document lengths of a chunk."""
    backend, sep, segmenter = _STATE["backend"], _STATE["sep"], _STATE["segmenter"]
    ids: list[int] = []
    starts: list[np.ndarray] = []
    lengths = np.zeros(len(texts), dtype=np.int64)
    for k, (text, enc) in enumerate(zip(texts, backend.encode_batch(texts, add_special_tokens=False),
                                        strict=True)):
        if not enc.ids:
            continue
        ids.extend(enc.ids)
        ids.append(sep)
        starts.append(word_starts(enc.tokens, enc.offsets, text, segmenter))
        starts.append(np.zeros(1, dtype=bool))
        lengths[k] = len(enc.ids) + 1
    ws = np.concatenate(starts).astype(np.uint8) if starts else np.zeros(0, np.uint8)
    return np.asarray(ids, dtype=np.int64), ws, lengths


def _chunks(cfg: PrepareConfig, problems: Problems, stats: dict) -> Iterator[list[str]]:
    chunk: list[str] = []
    for doc in iter_documents(cfg.inputs, cfg.text_field, cfg.doc_sep, cfg.max_line_bytes, problems):
        chunk.append(doc.text)
        stats["chars"] += len(doc.text)
        if len(chunk) == cfg.chunk_docs:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


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


def prepare(cfg: PrepareConfig) -> dict:
    """Tokenise the corpus into ``cfg.out``; returns the manifest."""
    tok = load_tokenizer(cfg.vocab, cfg.lowercase)
    vocab_file = Path(cfg.vocab) / "vocab.txt" if Path(cfg.vocab).is_dir() else Path(cfg.vocab)
    vocab_sha = hashlib.sha256(vocab_file.read_bytes()).hexdigest()
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
    tmp.mkdir(parents=True)
    dtype = np.uint16 if len(tok) <= np.iinfo(np.uint16).max else np.int32
    problems, stats = Problems(), {"chars": 0}
    workers = cfg.workers or os.cpu_count() or 1
    t0 = time.perf_counter()
    n_tokens = n_docs = 0
    init_args = (cfg.vocab, cfg.lowercase, segmenter)
    with open(tmp / "tokens.bin", "wb") as f_ids, open(tmp / "word_starts.bin", "wb") as f_ws, \
            open(tmp / "doc_lengths.tmp", "wb") as f_len, \
            tqdm(unit=" chars", unit_scale=True, desc="prepare", mininterval=1.0) as bar:
        for ids, ws, lengths in _run(_chunks(cfg, problems, stats), workers, init_args):
            f_ids.write(ids.astype(dtype).tobytes())
            f_ws.write(ws.tobytes())
            f_len.write(lengths[lengths > 0].tobytes())
            n_tokens += len(ids)
            n_docs += int((lengths > 0).sum())
            empty = int((lengths == 0).sum())
            if empty:
                problems.counts["no_tokens_skipped"] += empty
            bar.update(stats["chars"] - bar.n)
    # offsets on disk too: nothing in memory grows with the corpus
    offsets = np.lib.format.open_memmap(tmp / "doc_offsets.npy", mode="w+", dtype=np.int64, shape=(n_docs + 1,))
    offsets[0] = 0
    if n_docs:
        np.cumsum(np.memmap(tmp / "doc_lengths.tmp", dtype=np.int64, mode="r"), out=offsets[1:])
    offsets.flush()
    del offsets
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
        "tokenizer": {"vocab_size": len(tok), "vocab_sha256": vocab_sha,
                      "do_lower_case": bool(tok.do_lower_case), "source": vocab_file.name},
        "segmenter": segmenter,
        "special_ids": {"cls": tok.cls_token_id, "sep": tok.sep_token_id, "pad": tok.pad_token_id,
                        "mask": tok.mask_token_id, "unk": tok.unk_token_id},
        "inputs": [{"file": f.name, "bytes": f.stat().st_size} for f in list_files(cfg.inputs)],
        "skipped": problems.as_dict(),
        "seconds": round(elapsed, 2),
        "chars_per_second": round(stats["chars"] / max(elapsed, 1e-9)),
        "options": {k: v for k, v in to_dict(cfg).items() if k not in ("out", "inputs", "force")},
        "fingerprint": fp,
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    skipped = sum(problems.counts.values())
    log.info("%d documents, %d tokens, %d characters in %.1fs (%.0f chars/s); %d lines skipped or changed",
             manifest["documents"], n_tokens, stats["chars"], elapsed, manifest["chars_per_second"], skipped)
    return manifest


def _run(chunks: Iterator[list[str]], workers: int, init_args: tuple) -> Iterator[tuple]:
    """Encode chunks in order, with at most 2 x workers chunks in flight."""
    if workers == 1:
        _init_worker(*init_args)
        yield from map(_encode, chunks)
        return
    ctx = mp.get_context("spawn")  # fork would copy tokenizer threads' state
    with ctx.Pool(workers, initializer=_init_worker, initargs=init_args) as pool:
        pending: deque = deque()
        for chunk in chunks:
            pending.append(pool.apply_async(_encode, (chunk,)))
            if len(pending) >= 2 * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
