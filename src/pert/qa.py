"""Ask a fine-tuned reading-comprehension model questions (transformers 5 has no QA pipeline).

    pert qa --model runs/cmrc/seed-1/best --context "..." --question "..."
    pert qa --model runs/cmrc/seed-1/best --input cmrc2018_dev.json --output predictions.json

    from pert.qa import answer
    answer("runs/cmrc/seed-1/best", [("Who wrote it?", "It was written by ...")])

Long contexts are cut into overlapping windows (``doc_stride``) exactly as in training, and the best
span over all windows wins. Windows run in length-sorted batches, each padded only to its longest
window, under ``torch.inference_mode``; ``precision="bf16"`` adds autocast (GPUs, CPUs with
avx512_bf16/AMX). Speed against the transformers 4.x pipeline: ``benchmarks/inference.py``.

``runtime="onnx"`` (``pert qa --runtime onnx``) runs a folder written by ``pert export onnx`` on
onnxruntime instead (CPU; fp32, or int8 when exported with ``--quantize int8``): ``pert.runtime``.

A folder fine-tuned on SQuAD 2.0 (its ``pert_training.json`` says ``task: squad2``) may answer ""
(no answer), using the null threshold chosen on dev.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pert.progress import progress as progress_bar
from pert.runtime import batch_tokens, length_batches
from pert.tasks.mrc_data import MrcExample, read_mrc_file
from pert.tasks.mrc_features import check_lengths, encode_examples
from pert.tasks.mrc_postprocess import postprocess

log = logging.getLogger(__name__)


@dataclass
class Answer:
    """An answer span: ``context[start:end] == text``; ``start == end == -1`` and ``text == ""`` for none."""

    text: str
    score: float
    start: int
    end: int


NON_MODEL_KEYS = ("example_index", "offsets", "max_context", "start_positions", "end_positions")


class QuestionAnswerer:
    """A loaded ``BertForQuestionAnswering`` folder plus its tokenizer and decoding settings."""

    def __init__(self, model_dir: str | Path, *, device: str = "auto", max_seq_len: int | None = None,
                 doc_stride: int | None = None, max_query_len: int | None = None,
                 max_answer_len: int | None = None, n_best: int = 20, null_threshold: float | None = None,
                 batch_size: int = 32, precision: str | None = "auto", runtime: str | None = None,
                 revision: str | None = None) -> None:
        """Unset window options come from the folder's ``pert_training.json`` when it records them, else
        from the task's defaults (doc_stride 128, max_query_len 64, max_answer_len 30).

        ``precision``: ``auto`` (the default: the folder's fine-tuning precision where this device runs it well,
        else fp32), ``fp32`` (exact), ``bf16`` (autocast: faster on GPUs and on CPUs with
        avx512_bf16 or AMX, answers may differ where two spans score almost alike) or ``fp16`` (GPUs).
        ``runtime``: ``torch``, ``onnx`` for a folder from ``pert export onnx`` (onnxruntime on the CPU; its
        precision is the export's), or ``auto``/None: by folder, and on a CPU at precision auto the int8
        export beside the folder when its answers were checked at export time (``pert.runtime.checked_export``).
        """
        from pert.models import open_model

        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        opened = open_model(model_dir, revision=revision, device=device, precision=precision, runtime=runtime,
                            export="qa")
        self.model_dir, self.runtime, self.device = opened.path, opened.runtime, opened.device
        self.tokenizer, self.config, info = opened.tokenizer, opened.config, opened.training
        precision = opened.precision
        self.model, self.onnx = self._load_model(opened)
        trained = info.get("task_options") or {}
        limit = int(self.config.max_position_embeddings)
        default_len = info.get("max_seq_len") or (512 if info.get("task") in ("cmrc2018", "drcd") else 384)
        self.max_seq_len = min(max_seq_len or int(default_len), limit)
        self.doc_stride = doc_stride or int(trained.get("doc_stride", 128))
        self.max_query_len = max_query_len or int(trained.get("max_query_len", 64))
        self.max_answer_len = max_answer_len or int(trained.get("max_answer_len", 30))
        self.n_best, self.batch_size, self.precision = n_best, batch_size, precision
        check_lengths(self.max_seq_len, self.doc_stride, self.max_query_len)
        if null_threshold is None and info.get("task") == "squad2":
            null_threshold = float((info.get("dev") or {}).get("best_f1_thresh", 0.0))
        self.null_threshold = null_threshold

    def _load_model(self, opened: Any) -> tuple[Any, Any]:
        """(torch model, None) or (None, ExportedModel)."""
        if self.runtime == "onnx":
            return None, opened.onnx("qa")
        from transformers import BertForQuestionAnswering

        model = opened.with_head(BertForQuestionAnswering)
        if model.pert_new_head:
            raise ValueError(f"{self.model_dir}: no trained question-answering head (qa_outputs); fine-tune "
                             "it first with `pert finetune --task cmrc2018|drcd|squad1|squad2`")
        return model.to(self.device).eval(), None

    def _forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(start, end) logits of one padded batch, on ``self.device``."""
        if self.onnx is not None:
            start, end = self.onnx.run(batch)
            return torch.from_numpy(start), torch.from_numpy(end)
        res = self.model(**{k: v.to(self.device, non_blocking=True) for k, v in batch.items()})
        return res.start_logits, res.end_logits

    def logits(self, features: Sequence[dict[str, Any]],
               progress: bool = False) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Start and end logits (float32, one row per feature, its own length) of every feature.

        Features run in batches of similar length (``pert.runtime.length_batches``), each padded only to its own
        longest window; the logits stay on the device until the last batch, then come back in one copy.
        """
        from pert.hardware import autocast
        from pert.tasks.base import pad_features

        lengths = np.array([len(f["input_ids"]) for f in features], dtype=np.int64)
        width = int(lengths.max()) if len(features) else 0
        out = torch.zeros((2, len(features), width), dtype=torch.float32, device=self.device)
        pad_id = self.tokenizer.pad_token_id
        budget = batch_tokens(self.runtime, self.device)
        batches = [np.array(b) for b in length_batches(lengths.tolist(), self.batch_size, max_tokens=budget)]
        with torch.inference_mode(), autocast(self.device, self.precision):
            for idx in progress_bar(batches, desc="qa", unit="batch", disable=not progress):
                batch = pad_features([features[i] for i in idx], pad_id, drop=NON_MODEL_KEYS)
                start, end = self._forward(batch)
                rows = torch.from_numpy(idx).to(self.device, non_blocking=True)
                w = batch["input_ids"].shape[1]
                out[0, rows, :w] = start.float()
                out[1, rows, :w] = end.float()
        host = out.cpu().numpy()
        return ([host[0, i, :n] for i, n in enumerate(lengths)], [host[1, i, :n] for i, n in enumerate(lengths)])

    def predict(self, examples: Sequence[MrcExample], progress: bool = False) -> list[Any]:
        """``MrcPrediction`` per example (answer, span, probability, n-best)."""
        if not examples:
            return []
        features = encode_examples(examples, self.tokenizer, self.max_seq_len, self.doc_stride,
                                   self.max_query_len)
        starts, ends = self.logits(features, progress)
        return postprocess(examples, features, starts, ends, self.n_best, self.max_answer_len,
                           self.null_threshold)

    def __call__(self, pairs: Iterable[tuple[str, str]], progress: bool = False) -> list[Answer]:
        """Answer (question, context) pairs."""
        examples = []
        for i, (question, context) in enumerate(pairs):
            if not isinstance(question, str) or not isinstance(context, str):
                raise ValueError(f"pair {i}: expected (question, context) strings")
            examples.append(MrcExample(str(i), question, context, [], []))
        return [Answer(p.text, p.score, p.start, p.end) for p in self.predict(examples, progress)]


def answer(model_dir: str | Path, pairs: Iterable[tuple[str, str]], **options: Any) -> list[Answer]:
    """Answer each (question, context) pair with the model in ``model_dir`` (options: QuestionAnswerer's)."""
    return QuestionAnswerer(model_dir, **options)(pairs)


def answer_file(model_dir: str | Path, input_path: str | Path, output_path: str | Path,
                **options: Any) -> dict[str, str]:
    """Answer every question of a SQuAD-style JSON file; write ``{question_id: answer}`` JSON (the
    official scripts' prediction format) and return it."""
    examples, _ = read_mrc_file(input_path)
    if not examples:
        raise ValueError(f"{input_path}: no questions found")
    predictions = QuestionAnswerer(model_dir, **options).predict(examples, progress=True)
    result = {e.qid: p.text for e, p in zip(examples, predictions, strict=True)}
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    output_path.write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    return result


def to_json(a: Answer) -> str:
    return json.dumps(asdict(a), ensure_ascii=False)
