"""Sentence and sentence-pair classification: the paper's Chinese and GLUE tasks, and your own tables.

Each built-in task knows its files (as staged in ``../shared/data``, see SOURCES.md) and label set;
``text-classification`` and ``pair-classification`` read any CSV/TSV/JSON-lines file with named
columns. Model: ``BertForSequenceClassification`` (pooled [CLS] -> linear), texts truncated to
``max_seq_len`` (longest-first for pairs), as in BERT's run_classifier.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from transformers import BertForSequenceClassification, PreTrainedModel, PreTrainedTokenizerBase

from pert.metrics.classification import accuracy, binary_f1, matthews_corrcoef
from pert.tasks.base import Task, TaskDefaults, load_model_with_head, register_task
from pert.tasks.readers import Source, Table, field_of, find_source, iter_rows

log = logging.getLogger(__name__)


@dataclass
class ClassificationExample:
    text_a: str
    text_b: str | None
    label: str | None  # None: unlabelled (e.g. GLUE test files)


class ClassificationTask(Task):
    """Shared logic; a built-in task sets the class attributes below."""

    labels: ClassVar[tuple[str, ...]] = ()
    # split -> candidate files, first existing wins (``name.zip:member`` for zip members)
    files: ClassVar[dict[str, tuple[str, ...]]] = {}
    table: ClassVar[Table] = Table()
    text_columns: ClassVar[tuple[str, str | None]] = ("sentence", None)
    label_column: ClassVar[str] = "label"
    label_aliases: ClassVar[dict[str, str]] = {}
    drop_labels: ClassVar[tuple[str, ...]] = ()  # rows with these labels are skipped (OCNLI's "-")
    metrics: ClassVar[tuple[str, ...]] = ("accuracy",)
    positive_label: ClassVar[str] = "1"

    # --- reading ---------------------------------------------------------------------------------
    def label_names(self) -> list[str]:
        return list(self.labels)

    def table_for(self, split: str, source: Source) -> Table:
        return self.table

    def columns(self) -> tuple[str, str | None, str]:
        return self.text_columns[0], self.text_columns[1], self.label_column

    def source(self, data_dir: Path, split: str) -> Source | None:
        return find_source(Path(data_dir), self.files.get(split, ()))

    def read(self, data_dir: Path, split: str) -> list[ClassificationExample] | None:
        source = self.source(data_dir, split)
        if source is None:
            return None
        return self.read_source(source, self.table_for(split, source))

    def read_source(self, source: Source, table: Table) -> list[ClassificationExample]:
        col_a, col_b, col_label = self.columns()
        known = set(self.label_names())
        out: list[ClassificationExample] = []
        empty: list[int] = []
        for line, row in iter_rows(source, table):
            label = None
            if col_label in row:
                label = field_of(source, line, row, col_label)
                label = self.label_aliases.get(label, label)
                if label in self.drop_labels:
                    continue
                if known and label not in known:
                    raise ValueError(f"{source.name}:{line}: field {col_label!r} has unknown label {label!r}; "
                                     f"expected one of {', '.join(sorted(known))}")
            text_b = field_of(source, line, row, col_b) if col_b else None
            out.append(ClassificationExample(field_of(source, line, row, col_a), text_b, label))
            if not out[-1].text_a or text_b == "":
                empty.append(line)
        if not out:
            raise ValueError(f"{source.name}: no examples found")
        if empty:
            log.warning("%s: %d rows have an empty text field (lines %s%s); they are kept, and the model reads only "
                        "its special tokens for them", source.name, len(empty), ", ".join(map(str, empty[:5])),
                        " ..." if len(empty) > 5 else "")
        labelled = {e.label is not None for e in out}
        if len(labelled) > 1:
            raise ValueError(f"{source.name}: some rows have a {col_label!r} field and some do not")
        return out

    # --- model -----------------------------------------------------------------------------------
    def build_model(self, model_dir: Path) -> PreTrainedModel:
        return load_model_with_head(BertForSequenceClassification, model_dir, self.label_names())

    def encode(self, examples: Sequence[ClassificationExample], tokenizer: PreTrainedTokenizerBase,
               max_seq_len: int) -> list[dict[str, Any]]:
        pair = examples[0].text_b is not None if examples else False
        enc = tokenizer([e.text_a for e in examples], [e.text_b for e in examples] if pair else None,
                        truncation="longest_first", max_length=max_seq_len)
        index = {name: i for i, name in enumerate(self.label_names())}
        features = []
        for i, e in enumerate(examples):
            f: dict[str, Any] = {k: enc[k][i] for k in ("input_ids", "token_type_ids", "attention_mask")}
            if e.label is not None:
                f["labels"] = index[e.label]
            f["example_index"] = i
            features.append(f)
        return features

    def postprocess(self, examples: Sequence[ClassificationExample], features: Sequence[dict[str, Any]],
                    outputs: dict[str, list[np.ndarray]]) -> list[str]:
        names = self.label_names()
        return [names[int(np.argmax(x))] for x in outputs["logits"]]

    # --- scoring ---------------------------------------------------------------------------------
    def has_labels(self, examples: Sequence[ClassificationExample]) -> bool:
        return bool(examples) and examples[0].label is not None

    def compute_metrics(self, examples: Sequence[ClassificationExample],
                        predictions: Sequence[str]) -> dict[str, float]:
        gold = [e.label for e in examples]
        fns = {"accuracy": accuracy, "mcc": matthews_corrcoef,
               "f1": lambda g, p: binary_f1(g, p, positive=self.positive_label)}
        return {m: 100.0 * fns[m](gold, list(predictions)) for m in self.metrics}

    def save_predictions(self, examples: Sequence[ClassificationExample], predictions: Sequence[str],
                         path: Path) -> None:
        import json

        with open(path, "w", encoding="utf-8") as f:
            for i, (e, p) in enumerate(zip(examples, predictions, strict=True)):
                f.write(json.dumps({"index": i, "prediction": p, "label": e.label}, ensure_ascii=False) + "\n")


def _splits(pattern: str, splits: Sequence[str] = ("train", "dev", "test")) -> dict[str, tuple[str, ...]]:
    return {s: (pattern.format(split=s),) for s in splits}


# --- Chinese -------------------------------------------------------------------------------------

@register_task
@dataclass
class ChnSentiCorp(ClassificationTask):
    name = "chnsenticorp"
    description = "ChnSentiCorp sentiment (ERNIE split), TSV `label<TAB>text_a`"
    defaults = TaskDefaults(lr=2e-5, epochs=3, batch_size=64, max_seq_len=256)
    labels = ("0", "1")
    files = _splits("{split}.tsv")
    text_columns = ("text_a", None)


@register_task
@dataclass
class TNews(ClassificationTask):
    name = "tnews"
    description = "CLUE TNEWS news titles, 15 classes, JSON lines"
    defaults = TaskDefaults(lr=2e-5, epochs=3, batch_size=32, max_seq_len=128)
    labels = tuple(str(x) for x in (*range(100, 105), *range(106, 111), *range(112, 117)))
    files = _splits("{split}.json")
    table = Table("jsonl")
    use_keywords: bool = False  # option: append the `keywords` field as the second text

    def columns(self) -> tuple[str, str | None, str]:
        return "sentence", ("keywords" if self.use_keywords else None), "label"


@register_task
@dataclass
class XNLI(ClassificationTask):
    name = "xnli"
    description = "XNLI Chinese (ERNIE task_data format), TSV `text_a<TAB>text_b<TAB>label`"
    defaults = TaskDefaults(lr=3e-5, epochs=2, batch_size=64, max_seq_len=128)
    labels = ("contradiction", "entailment", "neutral")
    label_aliases = {"contradictory": "contradiction"}
    files = _splits("{split}.tsv")
    text_columns = ("text_a", "text_b")


@register_task
@dataclass
class LCQMC(ClassificationTask):
    name = "lcqmc"
    description = "LCQMC question matching, `s1<TAB>s2<TAB>label` without header"
    defaults = TaskDefaults(lr=2e-5, epochs=3, batch_size=64, max_seq_len=128)
    labels = ("0", "1")
    files = {s: (f"{s}.txt", f"{s}.tsv") for s in ("train", "dev", "test")}
    table = Table("tsv", header=False, columns=("sentence1", "sentence2", "label"))
    text_columns = ("sentence1", "sentence2")


@register_task
@dataclass
class BQCorpus(ClassificationTask):
    name = "bq"
    description = "BQ Corpus: original CSV, or ChineseGLUE's bq.zip (`s1_!_s2_!_label`)"
    defaults = TaskDefaults(lr=3e-5, epochs=3, batch_size=64, max_seq_len=128)
    labels = ("0", "1")
    files = {s: (f"{s}.csv", f"original/{s}.csv", f"bq.zip:bq/{s}.txt", f"chineseglue/bq.zip:bq/{s}.txt")
             for s in ("train", "dev", "test")}
    text_columns = ("sentence1", "sentence2")

    def table_for(self, split: str, source: Source) -> Table:
        if source.member is not None:
            return Table("sep", header=False, columns=("sentence1", "sentence2", "label"), sep="_!_")
        return Table("csv")


@register_task
@dataclass
class OCNLI(ClassificationTask):
    name = "ocnli"
    description = "OCNLI (CLUE), JSON lines; rows labelled '-' (no majority) are dropped"
    defaults = TaskDefaults(lr=3e-5, epochs=3, batch_size=32, max_seq_len=128)
    labels = ("contradiction", "entailment", "neutral")
    drop_labels = ("-",)
    table = Table("jsonl")
    text_columns = ("sentence1", "sentence2")
    train_file: str = "train.50k.json"  # option: train.3k/10k/30k/50k.json

    def source(self, data_dir: Path, split: str) -> Source | None:
        return find_source(Path(data_dir), (self.train_file,) if split == "train" else (f"{split}.json",))


# --- English (GLUE) ------------------------------------------------------------------------------

@register_task
@dataclass
class SST2(ClassificationTask):
    name = "sst2"
    description = "GLUE SST-2, TSV `sentence<TAB>label` (test: `index<TAB>sentence`, unlabelled)"
    defaults = TaskDefaults(lr=2e-5, epochs=3, batch_size=32, max_seq_len=128)
    labels = ("0", "1")
    files = _splits("{split}.tsv")


@register_task
@dataclass
class CoLA(ClassificationTask):
    name = "cola"
    description = "GLUE CoLA, headerless `source<TAB>label<TAB>annotation<TAB>sentence`; metric MCC"
    defaults = TaskDefaults(lr=2e-5, epochs=3, batch_size=32, max_seq_len=128)
    main_metric = "mcc"
    metrics = ("mcc", "accuracy")
    labels = ("0", "1")
    files = _splits("{split}.tsv")

    def table_for(self, split: str, source: Source) -> Table:
        if split == "test":  # GLUE's test file has a header `index<TAB>sentence`
            return Table("tsv")
        return Table("tsv", header=False, columns=("source", "label", "annotation", "sentence"))


@register_task
@dataclass
class MRPC(ClassificationTask):
    name = "mrpc"
    description = "GLUE MRPC, TSV `Quality<TAB>#1 ID<TAB>#2 ID<TAB>#1 String<TAB>#2 String`; F1 and accuracy"
    defaults = TaskDefaults(lr=2e-5, epochs=3, batch_size=32, max_seq_len=128)
    main_metric = "f1"
    metrics = ("f1", "accuracy")
    labels = ("0", "1")
    files = _splits("{split}.tsv")
    text_columns = ("#1 String", "#2 String")
    label_column = "Quality"


@register_task
@dataclass
class MNLI(ClassificationTask):
    name = "mnli"
    description = "GLUE MNLI matched: train.tsv, dev_matched.tsv, test_matched.tsv (column `gold_label`)"
    defaults = TaskDefaults(lr=2e-5, epochs=3, batch_size=32, max_seq_len=128)
    labels = ("contradiction", "entailment", "neutral")
    text_columns = ("sentence1", "sentence2")
    label_column = "gold_label"
    variant: ClassVar[str] = "matched"

    def source(self, data_dir: Path, split: str) -> Source | None:
        name = "train.tsv" if split == "train" else f"{split}_{self.variant}.tsv"
        return find_source(Path(data_dir), (name,))


@register_task
@dataclass
class MNLIMismatched(MNLI):
    name = "mnli-mm"
    description = "GLUE MNLI mismatched: dev_mismatched.tsv, test_mismatched.tsv (train on train.tsv)"
    variant = "mismatched"


# --- your own data -------------------------------------------------------------------------------

_EXTENSIONS = (".tsv", ".csv", ".jsonl", ".json")


@register_task
@dataclass
class TextClassification(ClassificationTask):
    name = "text-classification"
    description = "your single-sentence data: {train,dev,test}.{tsv,csv,jsonl} with named columns"
    text_a: str = "text"
    text_b: str | None = None
    label: str = "label"
    label_set: list[str] | None = None  # labels in model order; default: sorted labels of train
    train_file: str | None = None  # default: the first of train.tsv/.csv/.jsonl/.json
    dev_file: str | None = None
    test_file: str | None = None
    _labels: list[str] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        self._labels = list(self.label_set or [])

    def options(self) -> dict[str, Any]:
        return {k: v for k, v in super().options().items() if not k.startswith("_")} | {"label_set": self._labels}

    def columns(self) -> tuple[str, str | None, str]:
        return self.text_a, self.text_b, self.label

    def label_names(self) -> list[str]:
        return self._labels

    def source(self, data_dir: Path, split: str) -> Source | None:
        given = getattr(self, f"{split}_file")
        if given:
            source = find_source(Path(data_dir), (given,))
            if source is None:
                raise FileNotFoundError(f"{Path(data_dir) / given}: no such file ({split}_file)")
            return source
        return find_source(Path(data_dir), tuple(split + ext for ext in _EXTENSIONS))

    def table_for(self, split: str, source: Source) -> Table:
        suffix = Path(source.member or source.path).suffix
        return {".csv": Table("csv"), ".jsonl": Table("jsonl"), ".json": Table("jsonl")}.get(suffix, Table("tsv"))

    def read(self, data_dir: Path, split: str) -> list[ClassificationExample] | None:
        if split == "train" and not self._labels:
            source = self.source(data_dir, split)
            if source is None:
                return None
            examples = self.read_source(source, self.table_for(split, source))
            if examples[0].label is None:
                raise ValueError(f"{source.name}: training file has no {self.label!r} column")
            self._labels = sorted({e.label for e in examples if e.label is not None})
            return examples
        return super().read(data_dir, split)

    def build_model(self, model_dir: Path) -> PreTrainedModel:
        if not self._labels:  # evaluating a fine-tuned folder: its config names the labels
            from pert.convert.folder import load_config

            config = load_config(model_dir)
            if BertForSequenceClassification.__name__ not in (config.architectures or []):
                raise ValueError(f"task {self.name}: give label_set=... or a train file (labels are unknown)")
            self._labels = [str(config.id2label[i]) for i in range(len(config.id2label))]
        return super().build_model(model_dir)


@register_task
@dataclass
class PairClassification(TextClassification):
    name = "pair-classification"
    description = "your sentence-pair data: {train,dev,test}.{tsv,csv,jsonl} with named columns"
    text_a: str = "text_a"
    text_b: str | None = "text_b"
