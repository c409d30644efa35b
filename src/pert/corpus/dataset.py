"""Read a prepared corpus back (memory-mapped) and pack it into fixed-length sequences.

Sequence k is ``[CLS] stream[k*(L-2) : (k+1)*(L-2)] [SEP]`` where the stream is all documents back to back,
each followed by [SEP] (as ``prepare`` wrote them). Only the last sequence can be short; it is padded.
A word cut by a sequence boundary starts a unit at the cut, so selection still never spans a boundary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pert.corpus.prepare import FORMAT_VERSION


@dataclass
class PackedBatch:
    ids: np.ndarray  # (B, L) int64
    word_start: np.ndarray  # (B, L) bool
    special: np.ndarray  # (B, L) bool: [CLS], [SEP], [PAD]
    attention_mask: np.ndarray  # (B, L) bool: false on padding


class PreparedCorpus:
    """A folder written by ``pert prepare``, memory-mapped."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        manifest = self.path / "manifest.json"
        if not manifest.is_file():
            raise FileNotFoundError(f"{self.path}: not a prepared corpus (no manifest.json); run `pert prepare`")
        self.manifest = json.loads(manifest.read_text("utf-8"))
        if self.manifest.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{manifest}: format_version {self.manifest.get('format_version')} is not "
                             f"{FORMAT_VERSION}; prepare the corpus again with this version of pert")
        n = self.manifest["tokens"]
        if not n:
            raise ValueError(f"{self.path}: the prepared corpus holds no tokens; prepare it again from text "
                             "with documents in it")
        for name, dtype in (("tokens.bin", self.manifest["dtype"]), ("word_starts.bin", np.uint8)):
            file = self.path / name
            size = file.stat().st_size if file.is_file() else None
            if size != n * np.dtype(dtype).itemsize:
                raise ValueError(f"{file}: {'missing' if size is None else f'{size} bytes'} where manifest.json "
                                 f"implies {n * np.dtype(dtype).itemsize} ({n} tokens); prepare the corpus again")
        self.tokens = np.memmap(self.path / "tokens.bin", dtype=self.manifest["dtype"], mode="r", shape=(n,))
        self.word_starts = np.memmap(self.path / "word_starts.bin", dtype=np.uint8, mode="r", shape=(n,))
        ids = self.manifest["special_ids"]
        self.cls_id, self.sep_id, self.pad_id = ids["cls"], ids["sep"], ids["pad"]
        self.mask_id = ids["mask"]
        self.vocab_size = self.manifest["tokenizer"]["vocab_size"]

    @property
    def tokenizer_dir(self) -> Path:
        return self.path / "tokenizer"

    def tokenizer(self) -> Any:
        """The tokenizer the corpus was prepared with (what a model trained from scratch on it saves)."""
        from pert.text.tokenizer import load_tokenizer

        return load_tokenizer(self.tokenizer_dir)

    def num_sequences(self, seq_len: int) -> int:
        return -(-len(self.tokens) // (seq_len - 2))

    def batch(self, seq_ids: np.ndarray, seq_len: int) -> PackedBatch:
        """Packed sequences ``seq_ids`` as arrays of shape (len(seq_ids), seq_len)."""
        body = seq_len - 2
        B = len(seq_ids)
        ids = np.full((B, seq_len), self.pad_id, dtype=np.int64)
        ws = np.zeros((B, seq_len), dtype=bool)
        ids[:, 0] = self.cls_id
        n = len(self.tokens)
        for r, k in enumerate(np.asarray(seq_ids, dtype=np.int64)):  # one slice copy per sequence
            lo = int(k) * body
            hi = min(lo + body, n)
            ids[r, 1:1 + hi - lo] = self.tokens[lo:hi]
            ws[r, 1:1 + hi - lo] = self.word_starts[lo:hi]
            ids[r, 1 + hi - lo] = self.sep_id
        special = (ids == self.cls_id) | (ids == self.sep_id) | (ids == self.pad_id)
        attention = np.ones((B, seq_len), dtype=bool)
        attention[:, 1:] = np.cumsum(ids[:, 1:] == self.pad_id, axis=1) == 0
        # an end-of-document [SEP] right before the closing [SEP] is harmless; padding follows the last one
        return PackedBatch(ids, ws & ~special, special, attention)
