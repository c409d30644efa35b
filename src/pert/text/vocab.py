"""Build a BERT WordPiece ``vocab.txt`` from raw text with the ``tokenizers`` library."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import BertWordPieceTokenizer

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build_vocab(texts: Iterable[str], out_file: str | Path, vocab_size: int = 21128,
                lowercase: bool = True, min_frequency: int = 2) -> int:
    """Train WordPiece with BERT's conventions (Chinese characters split as single tokens).

    Writes ``out_file`` and returns the vocabulary size. The same texts give the same file: the trainer
    alone numbers word-continuation pieces (``##x``) in hash-map order and so breaks ties differently
    from run to run (huggingface/tokenizers#1794); here the words are counted first and those pieces
    registered up front in sorted order.
    """
    tok = BertWordPieceTokenizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                 lowercase=lowercase)
    normalizer, pre_tokenizer = tok._tokenizer.normalizer, tok._tokenizer.pre_tokenizer
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    pieces = sorted({"##" + c for w in counts for c in w[1:]})
    tok.train_from_iterator(_batched(_repeated(counts)), vocab_size=vocab_size, min_frequency=min_frequency,
                            special_tokens=SPECIAL_TOKENS + pieces, limit_alphabet=20000, wordpieces_prefix="##",
                            show_progress=sys.stderr.isatty())  # its bars are blank lines in a log file
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_suffix(".tmp")
    tmp.write_text("".join(t + "\n" for t, _ in vocab), encoding="utf-8")
    tmp.replace(out_file)
    return len(vocab)


def _repeated(counts: Counter[str], most: int = 1000) -> Iterator[str]:
    """Each counted word as often as it was seen, in a fixed order, at most ``most`` copies a text."""
    for word, n in sorted(counts.items()):
        for start in range(0, n, most):
            yield " ".join([word] * min(most, n - start))


def _batched(texts: Iterable[str], n: int = 1000) -> Iterator[list[str]]:
    batch: list[str] = []
    for t in texts:
        batch.append(t)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch
