"""The options of `pert prepare` (kept apart from the work so that building the CLI imports nothing heavy)."""

from __future__ import annotations

from dataclasses import dataclass

from pert.config import check, field


@dataclass
class PrepareConfig:
    out: str = field(None, required=True, help="output folder")
    vocab: str = field(None, required=True, help="vocab.txt, a model folder or a Hub id whose tokenizer to use")
    revision: str | None = field(None, help="Hub revision (branch, tag or commit) when --vocab is a Hub id")
    lang: str = field("zh", choices=("zh", "en"),
                      help="zh (words from a segmenter) or en (words from WordPiece continuations)")
    inputs: list[str] = field([], help="text files or folders (.txt, .jsonl, .gz)")
    segmenter: str = field("rjieba", help="Chinese segmenter: rjieba, jieba, char, or module:function")
    lowercase: bool | None = field(None, help="override the tokenizer's lower-casing")
    text_field: str = field("text", help="field holding the text in .jsonl records")
    doc_sep: str = field("line", choices=("line", "blank"),
                         help="'line': one document per line; 'blank': blank-line-separated")
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
