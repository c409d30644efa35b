"""Load a BERT WordPiece tokenizer from a vocab.txt or a model folder, and mark whole-word starts."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
from transformers import BertTokenizer, PreTrainedTokenizerBase

from pert.text.segment import Segmenter
from pert.text.vocab import SPECIAL_TOKENS


def vocab_is_uncased(vocab_file: str | Path) -> bool:
    """Whether a vocabulary was built from lower-cased text: almost none of its pieces hold a capital ASCII
    letter. (Google's uncased Chinese vocabulary still has ``<S>``, ``<T>`` and capital Greek letters; a cased
    English one has thousands of capitalised pieces.)"""
    pieces = capital = 0
    with open(vocab_file, encoding="utf-8") as f:
        for line in f:
            tok = line.rstrip("\n")
            if tok.startswith("[") and tok.endswith("]"):
                continue
            pieces += 1
            capital += any("A" <= ch <= "Z" for ch in tok)
    return capital <= 0.005 * pieces


def check_vocab_file(vocab_file: str | Path) -> None:
    """Refuse a file that is not a BERT ``vocab.txt``: binary or not UTF-8, or without BERT's special tokens
    on lines of their own. (transformers 5 would silently add missing special tokens at new ids, which no
    pre-trained embedding matches.)"""
    data = Path(vocab_file).read_bytes()
    if b"\x00" in data[:1 << 20]:
        raise ValueError(f"{vocab_file}: a binary file, not a vocab.txt (one WordPiece token a line)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ValueError(f"{vocab_file}:{line}: not UTF-8 text, so not a vocab.txt (one WordPiece token a "
                         "line)") from None
    tokens = set(text.splitlines())
    missing = [t for t in SPECIAL_TOKENS if t not in tokens]
    if missing:
        raise ValueError(f"{vocab_file}: not a BERT vocab.txt: lacks the special token(s) {' '.join(missing)} "
                         f"(a BERT vocabulary has {' '.join(SPECIAL_TOKENS)}, one token a line)")


def load_tokenizer(path: str | Path, lowercase: bool | None = None) -> PreTrainedTokenizerBase:
    """Tokenizer of a model folder (its own casing) or of a bare ``vocab.txt`` (casing from the vocab).

    ``lowercase`` overrides the casing when given.
    """
    path = Path(path)
    if path.is_dir():
        vocab = path / "vocab.txt"
        if not vocab.is_file():
            raise FileNotFoundError(f"{path}: no vocab.txt in this model folder")
        check_vocab_file(vocab)
        kwargs = {}
        cfg = path / "tokenizer_config.json"
        if cfg.is_file():
            try:
                kwargs["do_lower_case"] = bool(json.loads(cfg.read_text("utf-8")).get("do_lower_case", True))
            except json.JSONDecodeError as e:
                raise ValueError(f"{cfg}: not valid JSON ({e})") from e
        else:
            kwargs["do_lower_case"] = vocab_is_uncased(vocab)
        path = vocab
    elif path.is_file():
        check_vocab_file(path)
        kwargs = {"do_lower_case": vocab_is_uncased(path)}
    else:
        raise FileNotFoundError(f"{path}: no such vocab file or model folder")
    if lowercase is not None:
        kwargs["do_lower_case"] = lowercase
    return BertTokenizer(str(path), **kwargs)  # positional: 4.x calls it vocab_file, 5.x vocab


def word_starts(tokens: list[str], offsets: list[tuple[int, int]], text: str,
                segmenter: Segmenter | None) -> np.ndarray:
    """Whole-word starts of a tokenised text (bool per token).

    A ``##`` continuation never starts a word. Without a segmenter (English) every other piece does;
    with one (Chinese) a piece starts a word when it begins a different segmenter word than the
    previous piece.
    """
    n = len(tokens)
    cont = np.fromiter((t.startswith("##") for t in tokens), dtype=bool, count=n)
    if segmenter is None or n == 0:
        return ~cont
    ends = np.cumsum([len(w) for w in segmenter(text)])
    starts = np.fromiter((o[0] for o in offsets), dtype=np.int64, count=n)
    word_of = np.searchsorted(ends, starts, side="right")
    new_word = np.ones(n, dtype=bool)
    new_word[1:] = word_of[1:] != word_of[:-1]
    return new_word & ~cont


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, out_dir: str | Path) -> None:
    """Save tokenizer files plus BERT's ``vocab.txt`` (transformers 5 no longer writes it for BERT)."""
    out_dir = Path(out_dir)
    try:
        tokenizer.save_pretrained(out_dir)
    except Exception as e:  # the Rust side of tokenizers reports an I/O error as a bare Exception
        found = re.search(r"os error (\d+)", str(e))
        if type(e) is not Exception or found is None:
            raise
        code = int(found.group(1))
        raise OSError(code, os.strerror(code), str(out_dir)) from None
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    (out_dir / "vocab.txt").write_text("".join(t + "\n" for t, _ in vocab), encoding="utf-8")
