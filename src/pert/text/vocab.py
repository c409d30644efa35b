"""Build a BERT WordPiece ``vocab.txt`` from raw text with the ``tokenizers`` library."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import BertWordPieceTokenizer

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build_vocab(texts: Iterable[str], out_file: str | Path, vocab_size: int = 21128,
                lowercase: bool = True, min_frequency: int = 2) -> int:
    """Train WordPiece with BERT's conventions (Chinese characters split as single tokens).

    Writes ``out_file`` and returns the vocabulary size.
    """
    tok = BertWordPieceTokenizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                 lowercase=lowercase)
    tok.train_from_iterator(_batched(texts), vocab_size=vocab_size, min_frequency=min_frequency,
                            special_tokens=SPECIAL_TOKENS, limit_alphabet=20000, wordpieces_prefix="##")
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_suffix(".tmp")
    tmp.write_text("".join(t + "\n" for t, _ in vocab), encoding="utf-8")
    tmp.replace(out_file)
    return len(vocab)


def _batched(texts: Iterable[str], n: int = 1000) -> Iterator[list[str]]:
    batch: list[str] = []
    for t in texts:
        batch.append(t)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch
