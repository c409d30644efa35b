"""Named-entity recognition: MSRA-NER, People's Daily (character-level BIO), CoNLL-2003 and your own files.

Model: ``BertForTokenClassification``. Each word (a Chinese character, an English token) is split into
word pieces; its label sits on the first piece, the other pieces are ignored (-100). A sentence longer
than the model is cut into overlapping windows of ``max_seq_len - 2`` pieces, ``doc_stride`` pieces of
overlap; a word's prediction is taken from the window where its first piece has the most context on
both sides. A word with no pieces at all (a control character) is given ``[UNK]``, so every word gets
exactly one prediction and nothing is dropped. Scored with entity-level P/R/F1: conlleval's chunking by
default (the official CoNLL score, seqeval's default mode), strict IOB2/IOBES with ``mode=strict``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from transformers import BertForTokenClassification, PreTrainedModel, PreTrainedTokenizerBase

from pert.metrics.ner import MODES, SCHEMES, ner_scores
from pert.tasks.base import IGNORE_INDEX, Task, TaskDefaults, load_model_with_head, register_task
from pert.tasks.readers import Source, find_source, read_columns


@dataclass
class NerExample:
    tokens: list[str]
    tags: list[str] | None  # None: unlabelled


def tag_set(types: Sequence[str], scheme: str = "BIO") -> list[str]:
    """``O`` then each type's prefixed tags, e.g. BIO over (LOC, PER): O, B-LOC, I-LOC, B-PER, I-PER."""
    prefixes = "BI" if scheme == "BIO" else "BIES"
    return ["O"] + [f"{p}-{t}" for t in sorted(types) for p in prefixes]


def read_word_tag_file(source: Source, tag_types: dict[str, str]) -> list[NerExample]:
    """The SIGHAN 2006 MSRA format: a sentence per line of ``word/tag`` tokens -> character-level BIO.

    ``tag_types`` maps the corpus tags to entity types (``nr`` -> PER); ``o`` is outside.
    """
    out: list[NerExample] = []
    for n, line in enumerate(source.lines(), 1):
        items = line.split()
        if not items:
            continue
        chars: list[str] = []
        tags: list[str] = []
        for item in items:
            word, sep, tag = item.rpartition("/")
            if not sep or not word:
                raise ValueError(f"{source.name}:{n}: expected word/tag, got {item!r}")
            if tag == "o":
                tags.extend("O" * len(word))
            elif tag in tag_types:
                kind = tag_types[tag]
                tags.extend([f"B-{kind}"] + [f"I-{kind}"] * (len(word) - 1))
            else:
                raise ValueError(f"{source.name}:{n}: unknown tag {tag!r} in {item!r}; "
                                 f"expected o or {', '.join(sorted(tag_types))}")
            chars.extend(word)
        out.append(NerExample(chars, tags))
    return out


@dataclass
class NerTask(Task):
    """Shared logic; a built-in task sets ``files`` and ``types``."""

    main_metric = "f1"
    files: ClassVar[dict[str, tuple[str, ...]]] = {}
    types: ClassVar[tuple[str, ...]] = ("LOC", "ORG", "PER")
    scheme: ClassVar[str] = "BIO"
    non_model_keys = ("example_index", "word_ids", "context")

    doc_stride: int = 32  # pieces of overlap between windows of a long sentence (at most half a window)
    mode: str = "conlleval"  # entity scoring: conlleval (official CoNLL, seqeval's default) or strict

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"task {self.name}: mode must be one of {', '.join(MODES)}, got {self.mode!r}")

    # --- reading ---------------------------------------------------------------------------------
    def tag_names(self) -> list[str]:
        return tag_set(self.types, self.scheme)

    def source(self, data_dir: Path, split: str) -> Source | None:
        return find_source(Path(data_dir), self.files.get(split, ()))

    def read(self, data_dir: Path, split: str) -> list[NerExample] | None:
        source = self.source(data_dir, split)
        return None if source is None else self.read_source(source)

    def read_source(self, source: Source) -> list[NerExample]:
        known = set(self.tag_names())
        out = []
        for tokens, tags, line in read_columns(source):
            for i, tag in enumerate(tags):
                if tag not in known:
                    raise ValueError(f"{source.name}:{line + i}: unknown tag {tag!r} ({self.scheme} over "
                                     f"{', '.join(sorted(self.types))} expected)")
            out.append(NerExample(tokens, tags))
        if not out:
            raise ValueError(f"{source.name}: no sentences found")
        return out

    # --- model -----------------------------------------------------------------------------------
    def build_model(self, model_dir: Path) -> PreTrainedModel:
        return load_model_with_head(BertForTokenClassification, model_dir, self.tag_names())

    def encode(self, examples: Sequence[NerExample], tokenizer: PreTrainedTokenizerBase,
               max_seq_len: int) -> list[dict[str, Any]]:
        window = max_seq_len - 2
        stride = min(self.doc_stride, window // 2)
        index = {t: i for i, t in enumerate(self.tag_names())}
        features: list[dict[str, Any]] = []
        for start in range(0, len(examples), 1000):  # bounded memory on large files
            chunk = examples[start:start + 1000]
            enc = tokenizer([e.tokens for e in chunk], is_split_into_words=True, add_special_tokens=False)
            for j, e in enumerate(chunk):
                ids, words, first = word_pieces(enc["input_ids"][j], enc.word_ids(j), len(e.tokens),
                                                tokenizer.unk_token_id)
                labels = None if e.tags is None else [index[e.tags[w]] if f else IGNORE_INDEX
                                                      for w, f in zip(words, first, strict=True)]
                features.extend(windows(ids, words, first, labels, window, stride, tokenizer,
                                        start + j))
        return features

    def postprocess(self, examples: Sequence[NerExample], features: Sequence[dict[str, Any]],
                    outputs: dict[str, list[np.ndarray]]) -> list[list[str]]:
        names = self.tag_names()
        preds = [[-1] * len(e.tokens) for e in examples]
        best = [[-1] * len(e.tokens) for e in examples]
        for f, logits in zip(features, outputs["logits"], strict=True):
            ex = f["example_index"]
            for pos, (w, ctx) in enumerate(zip(f["word_ids"], f["context"], strict=True)):
                if w >= 0 and ctx > best[ex][w]:
                    best[ex][w] = ctx
                    preds[ex][w] = int(np.argmax(logits[pos]))
        for ex, p in enumerate(preds):
            if -1 in p:  # cannot happen with windows() below; guards the invariant
                raise RuntimeError(f"example {ex}: word {p.index(-1)} got no prediction")
        return [[names[i] for i in p] for p in preds]

    # --- scoring ---------------------------------------------------------------------------------
    def has_labels(self, examples: Sequence[NerExample]) -> bool:
        return bool(examples) and examples[0].tags is not None

    def compute_metrics(self, examples: Sequence[NerExample], predictions: Sequence[list[str]]) -> dict[str, float]:
        scores = ner_scores([e.tags for e in examples], predictions, scheme=self.scheme, per_type=True,
                            mode=self.mode)
        return {k: 100.0 * v for k, v in scores.items()}

    def save_predictions(self, examples: Sequence[NerExample], predictions: Sequence[list[str]], path: Path) -> None:
        with open(path, "w", encoding="utf-8") as f:
            for i, (e, p) in enumerate(zip(examples, predictions, strict=True)):
                f.write(json.dumps({"index": i, "tokens": e.tokens, "prediction": p, "tags": e.tags},
                                   ensure_ascii=False) + "\n")


def word_pieces(piece_ids: list[int], word_ids: list[int | None], n_words: int,
                unk_id: int) -> tuple[list[int], list[int], list[bool]]:
    """Piece ids, the word of each piece and whether it is the word's first; empty words get [UNK]."""
    grouped: list[list[int]] = [[] for _ in range(n_words)]
    for pid, w in zip(piece_ids, word_ids, strict=True):
        if w is not None:
            grouped[w].append(pid)
    ids: list[int] = []
    words: list[int] = []
    first: list[bool] = []
    for w, pieces in enumerate(grouped):
        pieces = pieces or [unk_id]
        ids.extend(pieces)
        words.extend([w] * len(pieces))
        first.extend([True] + [False] * (len(pieces) - 1))
    return ids, words, first


def windows(ids: list[int], words: list[int], first: list[bool], labels: list[int] | None, window: int,
            stride: int, tokenizer: PreTrainedTokenizerBase, example_index: int) -> list[dict[str, Any]]:
    """Features of one sentence: ``[CLS] piece window [SEP]``, consecutive windows overlapping by ``stride``."""
    n = len(ids)
    starts = [0]
    while starts[-1] + window < n:
        starts.append(starts[-1] + window - stride)
    out = []
    for s in starts:
        e = min(s + window, n)
        # context of a piece: pieces beside it up to the nearer cut edge (a sentence end is no cut)
        ctx = [min(p - s if s > 0 else n, e - 1 - p if e < n else n) for p in range(s, e)]
        f: dict[str, Any] = {
            "input_ids": [tokenizer.cls_token_id, *ids[s:e], tokenizer.sep_token_id],
            "token_type_ids": [0] * (e - s + 2),
            "attention_mask": [1] * (e - s + 2),
        }
        if labels is not None:
            f["labels"] = [IGNORE_INDEX, *labels[s:e], IGNORE_INDEX]
        f["example_index"] = example_index
        f["word_ids"] = [-1] + [words[p] if first[p] else -1 for p in range(s, e)] + [-1]
        f["context"] = [-1, *ctx, -1]
        out.append(f)
    return out


# --- built-in tasks ------------------------------------------------------------------------------

@register_task
@dataclass
class MsraNer(NerTask):
    name = "msra-ner"
    description = ("MSRA-NER (SIGHAN 2006): train from msraner.zip train1.txt (word/tag, converted to BIO), "
                   "test from msra_test_bio.txt; there is no dev set")
    defaults = TaskDefaults(lr=3e-5, epochs=3, batch_size=32, max_seq_len=256)
    files = {
        "train": ("msra_train_bio.txt", "train.txt", "msraner.zip:msraner/train1.txt",
                  "sighan2006_chineseglue/msraner.zip:msraner/train1.txt"),
        "dev": ("msra_dev_bio.txt", "dev.txt"),
        "test": ("msra_test_bio.txt", "oye93/msra_test_bio.txt", "test.txt", "msraner.zip:msraner/testright1.txt",
                 "sighan2006_chineseglue/msraner.zip:msraner/testright1.txt"),
    }
    tag_types: ClassVar[dict[str, str]] = {"nr": "PER", "ns": "LOC", "nt": "ORG"}

    def read_source(self, source: Source) -> list[NerExample]:
        if source.member is not None:  # the original bakeoff format inside the zip
            return read_word_tag_file(source, self.tag_types)
        return super().read_source(source)


@register_task
@dataclass
class PeoplesDailyNer(NerTask):
    name = "peoples-daily-ner"
    description = ("People's Daily NER, character BIO `char tag`: HFL's peopledaily.zip (train/dev) + test.txt, "
                   "or zjy-ucas example.{train,dev,test}")
    defaults = TaskDefaults(lr=3e-5, epochs=3, batch_size=32, max_seq_len=256)
    files = {s: (f"{s}.txt", f"example.{s}", f"peopledaily.zip:{s}.txt", f"hfl/peopledaily.zip:{s}.txt")
             for s in ("train", "dev", "test")}


@register_task
@dataclass
class Conll2003(NerTask):
    name = "conll2003"
    description = "CoNLL-2003 English NER, `token POS chunk NER` columns, IOB2 tags; valid.txt is dev"
    defaults = TaskDefaults(lr=3e-5, epochs=3, batch_size=32, max_seq_len=128)
    types = ("LOC", "MISC", "ORG", "PER")
    files = {"train": ("train.txt",), "dev": ("valid.txt", "dev.txt"), "test": ("test.txt",)}


@register_task
@dataclass
class GenericNer(NerTask):
    name = "ner"
    description = "your NER data: {train,dev,test}.{txt,bio,bioes,conll,tsv} token-per-line columns, BIO or BIOES"
    defaults = TaskDefaults(lr=3e-5, epochs=3, batch_size=32, max_seq_len=128)
    tagging: str = "BIO"  # BIO (IOB2) or BIOES
    token_column: int = 0
    tag_column: int = -1
    entity_types: list[str] | None = None  # default: the types seen in the train file
    _types: list[str] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.tagging not in SCHEMES:
            raise ValueError(f"task ner: tagging must be one of {', '.join(SCHEMES)}, got {self.tagging!r}")
        self._types = sorted(self.entity_types or [])

    @property
    def scheme(self) -> str:  # type: ignore[override]
        return self.tagging

    def options(self) -> dict[str, Any]:
        return {k: v for k, v in super().options().items() if not k.startswith("_")} | {"entity_types": self._types}

    def tag_names(self) -> list[str]:
        return tag_set(self._types, self.tagging)

    def source(self, data_dir: Path, split: str) -> Source | None:
        exts = (".txt", ".bio", ".bioes", ".conll", ".tsv")
        return find_source(Path(data_dir), tuple(split + e for e in exts))

    def read_source(self, source: Source) -> list[NerExample]:
        sentences = read_columns(source, self.token_column, self.tag_column)
        if not self._types:
            types = set()
            for _tokens, tags, line in sentences:
                for i, tag in enumerate(tags):
                    prefix, sep, kind = tag.partition("-")
                    if tag != "O" and (not sep or prefix not in self.tagging or not kind):
                        raise ValueError(f"{source.name}:{line + i}: tag {tag!r} is not O or "
                                         f"{'/'.join(self.tagging.replace('O', ''))}-TYPE")
                    if sep:
                        types.add(kind)
            self._types = sorted(types)
        return super().read_source(source)

    def build_model(self, model_dir: Path) -> PreTrainedModel:
        if not self._types:  # evaluating a fine-tuned folder: its config names the tags
            from pert.convert.folder import load_config

            config = load_config(model_dir)
            if BertForTokenClassification.__name__ not in (config.architectures or []):
                raise ValueError("task ner: give entity_types=... or a train file (entity types are unknown)")
            tags = [str(config.id2label[i]) for i in range(len(config.id2label))]
            self._types = sorted({t.partition("-")[2] for t in tags if t != "O"})
        return super().build_model(model_dir)
