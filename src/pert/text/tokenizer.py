"""Load a BERT WordPiece tokenizer from a vocab.txt or a model folder, and mark whole-word starts."""

from __future__ import annotations

import hashlib
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

    A folder's ``vocab.txt`` is read with ``BertTokenizer``; a folder with only ``tokenizer.json`` (what
    transformers 5 writes) with ``AutoTokenizer``, which must give a WordPiece tokenizer. ``lowercase``
    overrides the casing when given.
    """
    path = Path(path)
    max_length = None
    if path.is_dir():
        vocab = path / "vocab.txt"
        cfg = path / "tokenizer_config.json"
        settings = {}
        if cfg.is_file():
            try:
                settings = json.loads(cfg.read_text("utf-8"))
            except json.JSONDecodeError as e:
                raise ValueError(f"{cfg}: not valid JSON ({e})") from e
            if not isinstance(settings, dict):
                raise ValueError(f"{cfg}: expected a JSON object")
        if not vocab.is_file():
            if (path / "tokenizer.json").is_file():
                return _quiet_about_length(_auto_tokenizer(path, lowercase))
            raise FileNotFoundError(f"{path}: no tokenizer in this model folder (expected vocab.txt or "
                                    "tokenizer.json)")
        check_vocab_file(vocab)
        kwargs = {"do_lower_case": bool(settings.get("do_lower_case", True)) if cfg.is_file()
                  else vocab_is_uncased(vocab)}
        limit = settings.get("model_max_length")
        if isinstance(limit, int) and 0 < limit < 1_000_000:
            max_length = limit
        path = vocab
    elif path.is_file():
        check_vocab_file(path)
        kwargs = {"do_lower_case": vocab_is_uncased(path)}
    else:
        raise FileNotFoundError(f"{path}: no such vocab file or model folder")
    if lowercase is not None:
        kwargs["do_lower_case"] = lowercase
    if max_length is not None:
        kwargs["model_max_length"] = max_length
    tok = BertTokenizer(str(path), **kwargs)  # positional: 4.x calls it vocab_file, 5.x vocab
    tok.pert_vocab_file = str(path)  # save_tokenizer copies it byte for byte
    return _quiet_about_length(tok)


def _quiet_about_length(tok: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Mark transformers' "sequence length is longer than the specified maximum ... indexing errors" warning as
    given: pert tokenises whole contexts and windows them itself (doc stride, sentence cuts) before the model."""
    tok.deprecation_warnings["sequence-length-is-longer-than-the-specified-maximum"] = True
    return tok


def _auto_tokenizer(folder: Path, lowercase: bool | None) -> PreTrainedTokenizerBase:
    """The tokenizer.json of a folder without vocab.txt; refused unless it is BERT's WordPiece."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(folder))  # local files only; never remote code
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{folder / 'tokenizer.json'}: cannot be loaded as a tokenizer: "
                         f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
    backend = getattr(tok, "backend_tokenizer", None)
    kind = json.loads(backend.to_str()).get("model", {}).get("type") if backend is not None else None
    if kind != "WordPiece":
        raise ValueError(f"{folder / 'tokenizer.json'}: a {kind or type(tok).__name__} tokenizer; pert needs "
                         "BERT's WordPiece (a vocab.txt or a WordPiece tokenizer.json)")
    if lowercase is not None:
        tok = BertTokenizer(vocab=tok.get_vocab(), do_lower_case=lowercase,
                            model_max_length=tok.model_max_length)
    _check_special_tokens(tok, folder / "tokenizer.json")
    return tok


def _check_special_tokens(tok: PreTrainedTokenizerBase, source: Path) -> None:
    for name in ("cls_token", "sep_token", "pad_token", "unk_token", "mask_token"):
        if getattr(tok, name + "_id", None) is None:
            raise ValueError(f"{source}: the vocabulary lacks the special token {getattr(tok, name)}")


def vocab_text(tokenizer: PreTrainedTokenizerBase) -> bytes:
    """The ``vocab.txt`` of a tokenizer: its source file's bytes when it was read from one (Google's Chinese
    vocabulary holds U+2028 tokens that tokenizers read as empty), else one token a line in id order."""
    source = getattr(tokenizer, "pert_vocab_file", None)
    if source and Path(source).is_file():
        raw = Path(source).read_bytes()
        lines = raw.decode("utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        ids = tokenizer.get_vocab()
        if len(lines) == len(tokenizer) and all(ids.get(t.strip()) == i for i, t in enumerate(lines)
                                                if t.strip() == t):
            return raw
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    return "".join(t + "\n" for t, _ in vocab).encode("utf-8")


def vocab_sha256(tokenizer: PreTrainedTokenizerBase) -> str:
    """Hash of the vocabulary (of ``vocab_text``): equal for a corpus and a model made with the same one."""
    return hashlib.sha256(vocab_text(tokenizer)).hexdigest()


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


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, out_dir: str | Path,
                   model_max_length: int | None = None) -> None:
    """Save tokenizer files plus BERT's ``vocab.txt`` (transformers 5 no longer writes it for BERT),
    byte-identical to the vocabulary file the tokenizer was read from.

    ``model_max_length``: the model's ``max_position_embeddings``, so that ``truncation=True`` and
    pipelines never feed it longer inputs (unset, transformers writes 1e30).
    """
    out_dir = Path(out_dir)
    old = tokenizer.model_max_length
    if model_max_length is not None:
        tokenizer.model_max_length = model_max_length
    try:
        tokenizer.save_pretrained(out_dir)
    except Exception as e:  # the Rust side of tokenizers reports an I/O error as a bare Exception
        found = re.search(r"os error (\d+)", str(e))
        if type(e) is not Exception or found is None:
            raise
        code = int(found.group(1))
        raise OSError(code, os.strerror(code), str(out_dir)) from None
    finally:
        tokenizer.model_max_length = old
    (out_dir / "vocab.txt").write_bytes(vocab_text(tokenizer))
