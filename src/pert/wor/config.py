"""The options of `pert wor-data` (kept apart from the work so that building the CLI imports nothing heavy)."""

from __future__ import annotations

from dataclasses import dataclass

from pert.config import check, field


@dataclass
class WorDataConfig:
    out: str = field(None, required=True, help="output folder (train/dev/test.jsonl, stats.json)")
    vocab: str = field(None, required=True, help="vocab.txt, model folder or Hub id whose tokenizer the model will "
                                                 "use")
    revision: str | None = field(None, help="Hub revision (branch, tag or commit) when --vocab is a Hub id")
    inputs: list[str] = field([], help="text files or folders (.txt, .jsonl, .gz)")
    lang: str = field("zh", choices=("zh", "en"), help="zh (words from a segmenter) or en (WordPiece whole words)")
    segmenter: str = field("rjieba", help="Chinese segmenter: rjieba, jieba, char, or module:function")
    lowercase: bool | None = field(None, help="override the tokenizer's lower-casing")
    seed: int = field(42, help="random seed: same seed and inputs, same bytes")
    negative_ratio: float = field(0.3, help="share of sentences left unchanged (negatives)")
    min_corruptions: int = field(1, help="fewest moved spans in a corrupted sentence")
    max_corruptions: int = field(2, help="most moved spans in a corrupted sentence")
    span_probs: list[float] = field([0.6, 0.25, 0.15], help="probabilities of permuting 2, 3, 4 words")
    move_punct: bool = field(False, help="let punctuation and symbols move too")
    min_tokens: int = field(8, help="shorter sentences are skipped")
    max_tokens: int = field(126, help="longer sentences are skipped (max_seq_len - 2)")
    dev_ratio: float = field(0.05, help="share of documents for dev")
    test_ratio: float = field(0.05, help="share of documents for test")
    max_train: int = field(0, help="stop train at this many sentences (0: no limit)")
    max_dev: int = field(0, help="stop dev at this many sentences (0: no limit)")
    max_test: int = field(0, help="stop test at this many sentences (0: no limit)")
    text_field: str = field("text", help="field holding the text in .jsonl records")
    doc_sep: str = field("line", choices=("line", "blank"),
                         help="'line': one document per line; 'blank': blank-line-separated")

    def __post_init__(self) -> None:
        check(bool(self.out), "out", "is required: the output folder")
        check(bool(self.vocab), "vocab", "is required: the vocab.txt or model folder of the model to train")
        check(bool(self.inputs), "inputs", "needs at least one file or folder")
        check(self.lang in ("zh", "en"), "lang", f"must be zh or en, not {self.lang!r}")
        check(0 <= self.negative_ratio < 1, "negative_ratio", "must be in [0, 1)")
        check(self.min_corruptions >= 1, "min_corruptions", "must be >= 1")
        check(self.max_corruptions >= self.min_corruptions, "max_corruptions", "must be >= --min-corruptions")
        check(1 <= len(self.span_probs) <= 3 and all(p >= 0 for p in self.span_probs)
              and abs(sum(self.span_probs) - 1) < 1e-6, "span_probs",
              "must be 1-3 non-negative probabilities (spans of 2, 3, 4 words) summing to 1")
        check(self.min_tokens >= 2, "min_tokens", "must be >= 2")
        check(self.max_tokens >= self.min_tokens, "max_tokens", "must be >= --min-tokens")
        check(self.dev_ratio >= 0 and self.test_ratio >= 0 and self.dev_ratio + self.test_ratio <= 1,
              "dev_ratio", "and --test-ratio must be >= 0 and add up to at most 1 (1: a held-out corpus, no train)")
        for name in ("max_train", "max_dev", "max_test"):
            check(getattr(self, name) >= 0, name, "must be >= 0")
        check(self.doc_sep in ("line", "blank"), "doc_sep", f"must be line or blank, not {self.doc_sep!r}")
