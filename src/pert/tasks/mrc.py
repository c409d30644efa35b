"""Extractive reading comprehension tasks: ``cmrc2018``, ``drcd``, ``squad1``, ``squad2``.

    pert finetune --task cmrc2018 --model MODEL_DIR --data ../shared/data/zh/cmrc2018 --out runs/cmrc \\
        --seeds 1 2 3
    pert evaluate --task cmrc2018 --model runs/cmrc/seed-1/best --data ../shared/data/zh/cmrc2018

Model: ``BertForQuestionAnswering`` (a linear start/end layer on the final hidden states), so a
fine-tuned folder loads unchanged in transformers. Features and windows: ``pert.tasks.mrc_features``;
n-best decoding: ``pert.tasks.mrc_postprocess``; metrics: ``pert.metrics.cmrc2018`` (CMRC 2018 and
DRCD, as HFL evaluates DRCD with the CMRC script) and ``pert.metrics.squad``.

Options (``--task-args KEY=VALUE``): ``doc_stride``, ``max_query_len``, ``max_answer_len``, ``n_best``,
``null_threshold`` (SQuAD 2.0), and ``train_file``/``dev_file``/``test_file`` to name files other than
the defaults. Training drops questions whose answer offset could not be resolved (logged with ids).
Predictions: ``predictions_<split>.json`` is the ``{question_id: answer}`` file the official scripts
read; the ``.jsonl`` beside it holds spans, probabilities and null odds. SQuAD 2.0 also writes
``null_odds_<split>.json`` (the official ``--na-prob-file``) and ``predictions_nonnull_<split>.json``
(each question's best non-null span): the official evaluate-v2.0.py gives pert's ``em``/``f1`` on
``predictions_<split>.json`` and pert's ``best_exact``/``best_f1`` on
``predictions_nonnull_<split>.json --na-prob-file null_odds_<split>.json``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from transformers import BertForQuestionAnswering, PreTrainedModel, PreTrainedTokenizerBase

from pert.metrics import cmrc2018 as cmrc_metric
from pert.metrics import squad as squad_metric
from pert.tasks.base import Task, TaskDefaults, load_model_with_head, pad_features, register_task
from pert.tasks.mrc_data import MrcExample, read_mrc_file
from pert.tasks.mrc_features import check_lengths, encode_examples
from pert.tasks.mrc_postprocess import MrcPrediction, postprocess

log = logging.getLogger(__name__)


@dataclass
class MrcTask(Task):
    """Shared logic of the SQuAD-format tasks; subclasses set name, files and metric flavour."""

    doc_stride: int = 128
    max_query_len: int = 64
    max_answer_len: int = 30
    n_best: int = 20
    null_threshold: float = 0.0
    train_file: str = ""
    dev_file: str = ""
    test_file: str = ""

    metric: ClassVar[str] = "cmrc2018"  # cmrc2018 | squad1 | squad2
    files: ClassVar[dict[str, tuple[str, ...]]] = {}
    non_model_keys: ClassVar[tuple[str, ...]] = ("example_index", "offsets", "max_context")
    main_metric = "f1"

    def __post_init__(self) -> None:
        try:
            check_lengths(self.max_query_len + 4, self.doc_stride, self.max_query_len)
        except ValueError as e:
            raise ValueError(f"task {self.name}: {e}") from e
        if self.max_answer_len < 1 or self.n_best < 1:
            raise ValueError(f"task {self.name}: max_answer_len and n_best must be at least 1")

    @property
    def with_null(self) -> bool:
        return self.metric == "squad2"

    # --- reading ---------------------------------------------------------------------------------
    def find_file(self, data_dir: Path, split: str) -> Path | None:
        chosen = {"train": self.train_file, "dev": self.dev_file, "test": self.test_file}[split]
        if chosen:
            path = Path(chosen) if Path(chosen).is_absolute() else Path(data_dir) / chosen
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no such file ({split}_file of task {self.name})")
            return path
        for name in (*self.files.get(split, ()), f"{split}.json"):
            for cand in (name, name + ".zip"):
                if (Path(data_dir) / cand).is_file():
                    return Path(data_dir) / cand
        return None

    def read(self, data_dir: Path, split: str) -> list[MrcExample] | None:
        path = self.find_file(data_dir, split)
        if path is None:
            return None
        examples, stats = read_mrc_file(path)
        if not examples:
            raise ValueError(f"{path}: no questions found")
        if stats.mismatched:
            log.info("%s: %d of %d answer offsets did not match their text: %d repaired, %d unresolved%s",
                     path, stats.mismatched, stats.answers, stats.repaired, stats.unresolved,
                     f" ({', '.join(stats.unresolved_ids[:5])}{' ...' if stats.unresolved > 5 else ''})"
                     if stats.unresolved else "")
        if not self.with_null and stats.impossible:
            raise ValueError(f"{path}: {stats.impossible} unanswerable questions; "
                             "use task squad2 for SQuAD 2.0")
        unscorable = [e.qid for e in examples if not e.impossible and not e.answers]
        if split != "train" and unscorable:  # the official scripts score them 0 whatever the model answers
            log.warning("%s: %d questions have no gold answer and score 0 whatever the answer (as in the official "
                        "script): %s%s", path, len(unscorable), ", ".join(unscorable[:5]),
                        " ..." if len(unscorable) > 5 else "")
        if split == "train":
            kept = [e for e in examples if e.impossible or e.target() is not None]
            if len(kept) < len(examples):
                dropped = [e.qid for e in examples if not e.impossible and e.target() is None]
                log.warning("%s: %d questions without a usable answer span are not trained on: %s%s", path,
                            len(dropped), ", ".join(dropped[:5]), " ..." if len(dropped) > 5 else "")
            examples = kept
        return examples

    # --- model -----------------------------------------------------------------------------------
    def build_model(self, model_dir: Path) -> PreTrainedModel:
        return load_model_with_head(BertForQuestionAnswering, model_dir)

    def encode(self, examples: Sequence[MrcExample], tokenizer: PreTrainedTokenizerBase,
               max_seq_len: int) -> list[dict[str, Any]]:
        return encode_examples(examples, tokenizer, max_seq_len, self.doc_stride, self.max_query_len)

    def collate(self, features: Sequence[dict[str, Any]],
                tokenizer: PreTrainedTokenizerBase) -> dict[str, torch.Tensor]:
        return pad_features(features, tokenizer.pad_token_id, drop=self.non_model_keys)

    def infer(self, model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        out = model(input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"],
                    attention_mask=batch["attention_mask"])
        return {"start_logits": out.start_logits.float().cpu().numpy(),
                "end_logits": out.end_logits.float().cpu().numpy()}

    def postprocess(self, examples: Sequence[MrcExample], features: Sequence[dict[str, Any]],
                    outputs: dict[str, list[np.ndarray]]) -> list[MrcPrediction]:
        return postprocess(examples, features, outputs["start_logits"], outputs["end_logits"], self.n_best,
                           self.max_answer_len, self.null_threshold if self.with_null else None)

    # --- scoring ---------------------------------------------------------------------------------
    def has_labels(self, examples: Sequence[MrcExample]) -> bool:
        return any(e.answers or e.impossible for e in examples)

    def compute_metrics(self, examples: Sequence[MrcExample],
                        predictions: Sequence[MrcPrediction]) -> dict[str, float]:
        gold = {e.qid: e.answers for e in examples}
        preds = {e.qid: p.text for e, p in zip(examples, predictions, strict=True)}
        if self.metric == "cmrc2018":
            r = cmrc_metric.evaluate([(e.qid, e.answers) for e in examples], preds)
            return {k: r[k] for k in ("em", "f1", "average", "total", "skip")}
        if self.metric == "squad1":
            r = squad_metric.evaluate_v1(gold, preds)
            return {"em": r["exact_match"], "f1": r["f1"], "total": r["total"]}
        r = squad_metric.evaluate_v2(gold, preds)
        spans = {e.qid: p.best_span for e, p in zip(examples, predictions, strict=True)}
        odds = {e.qid: _finite(p.null_odds) for e, p in zip(examples, predictions, strict=True)}  # as written
        best = squad_metric.evaluate_v2(gold, spans, na_probs=odds)
        out = {"em": r["exact"], "f1": r["f1"], "total": r["total"]}
        for key in ("HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1"):
            if key in r:
                out[key] = r[key]
        for key in ("best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh"):
            out[key] = best[key]
        return out

    def save_predictions(self, examples: Sequence[MrcExample], predictions: Sequence[MrcPrediction],
                         path: Path) -> None:
        path = Path(path)
        answers = {e.qid: p.text for e, p in zip(examples, predictions, strict=True)}
        path.with_suffix(".json").write_text(json.dumps(answers, ensure_ascii=False, indent=1),
                                             encoding="utf-8")
        with open(path, "w", encoding="utf-8") as f:
            for e, p in zip(examples, predictions, strict=True):
                row = {"id": e.qid, "answer": p.text, "start": p.start, "end": p.end, "probability": p.score,
                       "null_odds": _finite(p.null_odds), "nbest": [
                           {"text": d["text"], "start": d["start"], "probability": d.get("probability", 0.0)}
                           for d in p.nbest[:5]]}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        if self.with_null:
            odds = {e.qid: _finite(p.null_odds) for e, p in zip(examples, predictions, strict=True)}
            spans = {e.qid: p.best_span for e, p in zip(examples, predictions, strict=True)}
            (path.parent / f"{_sibling(path.stem, 'null_odds')}.json").write_text(json.dumps(odds), encoding="utf-8")
            (path.parent / f"{_sibling(path.stem, 'predictions_nonnull')}.json").write_text(
                json.dumps(spans, ensure_ascii=False, indent=1), encoding="utf-8")


def _sibling(stem: str, name: str) -> str:
    """``predictions_dev`` -> ``<name>_dev``; a stem without "predictions" gets ``_<name>`` appended."""
    return stem.replace("predictions", name, 1) if "predictions" in stem else f"{stem}_{name}"


def _finite(x: float) -> float:
    return x if math.isfinite(x) else (1e9 if x > 0 else -1e9)


_ZH = TaskDefaults(lr=3e-5, epochs=2, batch_size=32, max_seq_len=512)  # HFL's CMRC 2018/DRCD baseline
_EN = TaskDefaults(lr=3e-5, epochs=2, batch_size=32, max_seq_len=384)  # Google BERT run_squad README


@register_task
@dataclass
class Cmrc2018(MrcTask):
    name = "cmrc2018"
    description = "CMRC 2018 span-extraction MRC (Simplified Chinese, SQuAD-style JSON); official EM/F1"
    defaults = _ZH
    metric = "cmrc2018"
    files = {"train": ("cmrc2018_train.json",), "dev": ("cmrc2018_dev.json",),
             "test": ("cmrc2018_test.json",)}


@register_task
@dataclass
class Drcd(MrcTask):
    name = "drcd"
    description = "DRCD span-extraction MRC (Traditional Chinese, SQuAD-style JSON); CMRC 2018 EM/F1"
    defaults = _ZH
    metric = "cmrc2018"
    files = {"train": ("DRCD_training.json", "DRCD_train.json"), "dev": ("DRCD_dev.json",),
             "test": ("DRCD_test.json",)}


@register_task
@dataclass
class Squad1(MrcTask):
    name = "squad1"
    description = "SQuAD 1.1 (train-v1.1.json / dev-v1.1.json, zipped or not); official EM/F1"
    defaults = _EN
    metric = "squad1"
    files = {"train": ("train-v1.1.json",), "dev": ("dev-v1.1.json",), "test": ("test-v1.1.json",)}


@register_task
@dataclass
class Squad2(MrcTask):
    name = "squad2"
    description = "SQuAD 2.0 with unanswerable questions; official EM/F1, HasAns/NoAns, best null threshold"
    defaults = _EN
    metric = "squad2"
    main_metric = "best_f1"
    files = {"train": ("train-v2.0.json",), "dev": ("dev-v2.0.json",), "test": ("test-v2.0.json",)}
