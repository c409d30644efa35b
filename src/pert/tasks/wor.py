"""Word-order restoration (乱序纠错) as a fine-tuning task: ``pert finetune --task wor``.

Data: a folder with train/dev/test.jsonl from ``pert wor-data`` (the records' tokens must come from the
model's own vocabulary). Model: the pre-training model itself; the PerLM head scores, for every real
position i of the corrupted input, every input position j as "the token that belongs at i stands at j"
(unmoved tokens point to themselves), trained with cross-entropy over the real positions. Prediction:
the assignment over those scores (a true permutation), rendered back to text. Metrics: ``pert.metrics.wor``
in percent; the best checkpoint is chosen by sentence-level correction F1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from pert.metrics.wor import wor_scores
from pert.tasks.base import IGNORE_INDEX, Task, TaskDefaults, pad_features, register_task
from pert.wor.data import WorExample, read_wor_jsonl
from pert.wor.decode import decode_batch, moved_spans, render

PERCENT_KEYS = ("correction_precision", "correction_recall", "correction_f1", "detection_precision",
                "detection_recall", "detection_f1", "position_precision", "position_recall", "position_f1",
                "sentence_accuracy")


def _content_mask(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return batch["content_mask"].bool()


@register_task
@dataclass
class WordOrderRestoration(Task):
    """Pointer model over input positions with the PerLM head."""

    moved_weight: float = 1.0  # loss weight of positions whose token was moved (unmoved ones weigh 1)

    name = "wor"
    main_metric = "correction_f1"
    defaults = TaskDefaults(lr=5e-5, epochs=3.0, batch_size=32, max_seq_len=128)
    description = "word-order restoration: JSONL from `pert wor-data`; correction/detection/position P/R/F1"
    non_model_keys = ("example_index", "offsets", "content_mask")

    def read(self, data_dir: Path, split: str) -> list[WorExample] | None:
        path = Path(data_dir) / f"{split}.jsonl"
        return read_wor_jsonl(path) if path.is_file() else None

    def build_model(self, model_dir: Path) -> PreTrainedModel:
        from pert.convert.hf import load_pretraining_model

        return load_pretraining_model(model_dir, "perlm")

    def encode(self, examples: Sequence[WorExample], tokenizer: PreTrainedTokenizerBase,
               max_seq_len: int) -> list[dict[str, Any]]:
        keep = max_seq_len - 2
        enc = tokenizer([e.corrupted for e in examples], add_special_tokens=False,
                        return_offsets_mapping=True)
        features = []
        for i, e in enumerate(examples):
            ids = enc["input_ids"][i]
            tokens = tokenizer.convert_ids_to_tokens(ids)
            if tokens != e.tokens:
                bad = next((k for k, (a, b) in enumerate(zip(tokens, e.tokens, strict=False)) if a != b),
                           min(len(tokens), len(e.tokens)))
                raise ValueError(f"{e.where}: field 'tokens' differs from this model's tokenisation of "
                                 f"'corrupted' at token {bad}; the data was made with another vocabulary: "
                                 f"regenerate it with `pert wor-data --vocab MODEL_DIR`")
            n = min(len(ids), keep)
            labels = [lab + 1 if lab < n else IGNORE_INDEX for lab in e.labels[:n]]
            features.append({
                "input_ids": [tokenizer.cls_token_id, *ids[:n], tokenizer.sep_token_id],
                "attention_mask": [1] * (n + 2),
                "content_mask": [0] + [1] * n + [0],
                "labels": [IGNORE_INDEX, *labels, IGNORE_INDEX],
                "offsets": [list(o) for o in enc["offset_mapping"][i]],
                "example_index": i,
            })
        return features

    def collate(self, features: Sequence[dict[str, Any]],
                tokenizer: PreTrainedTokenizerBase) -> dict[str, torch.Tensor]:
        return pad_features(features, tokenizer.pad_token_id, drop=("example_index", "offsets"))

    def _logits(self, model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = model.position_logits(batch["input_ids"], batch["attention_mask"])
        # Only real tokens can be pointed at: [CLS], [SEP] and padding are excluded from the softmax.
        return logits.masked_fill(~_content_mask(batch).unsqueeze(1), float("-inf"))

    def loss(self, model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = self._logits(model, batch)
        labels = batch["labels"]
        if self.moved_weight == 1.0:
            return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX)
        per_token = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX,
                                    reduction="none").view_as(labels)
        own = torch.arange(labels.size(1), device=labels.device).expand_as(labels)
        weight = torch.where(labels == own, 1.0, self.moved_weight) * (labels != IGNORE_INDEX)
        return (per_token * weight).sum() / weight.sum().clamp(min=1)

    def infer(self, model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        logits = model.position_logits(batch["input_ids"], batch["attention_mask"])
        lengths = _content_mask(batch).sum(1).tolist()
        perms = decode_batch(logits, lengths)
        out = np.full(batch["input_ids"].shape, -1, dtype=np.int64)
        for b, p in enumerate(perms):
            out[b, :len(p)] = p
        return {"perm": out}

    def postprocess(self, examples: Sequence[WorExample], features: Sequence[dict[str, Any]],
                    outputs: dict[str, list[np.ndarray]]) -> list[dict[str, Any]]:
        predictions: list[dict[str, Any]] = [{} for _ in examples]
        for f, row in zip(features, outputs["perm"], strict=True):
            e = examples[f["example_index"]]
            n = sum(f["content_mask"])
            perm = [int(k) for k in row[:n]] + list(range(n, len(e.tokens)))
            text, spans = render(e.corrupted, e.tokens, [tuple(o) for o in f["offsets"]], perm)
            predictions[f["example_index"]] = {"text": text, "tokens": [e.tokens[k] for k in perm],
                                               "moved": moved_spans(perm, spans)}
        return predictions

    def compute_metrics(self, examples: Sequence[WorExample],
                        predictions: Sequence[dict[str, Any]]) -> dict[str, float]:
        scores = wor_scores([e.tokens for e in examples], [[e.tokens[j] for j in e.labels] for e in examples],
                            [p["tokens"] for p in predictions])
        return {k: 100.0 * scores[k] for k in PERCENT_KEYS}

    def save_predictions(self, examples: Sequence[WorExample], predictions: Sequence[dict[str, Any]],
                         path: Path) -> None:
        import json

        with open(path, "w", encoding="utf-8") as f:
            for e, p in zip(examples, predictions, strict=True):
                f.write(json.dumps({"id": e.id, "corrupted": e.corrupted, "prediction": p["text"],
                                    "original": e.original, "correct": p["text"] == e.original,
                                    "moved": p["moved"]}, ensure_ascii=False) + "\n")
