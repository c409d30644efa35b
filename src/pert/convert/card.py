"""The model card (README.md) of every folder pert writes, built from what the folder holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pert.convert.info import ModelInfo, casing, human, model_info

_OBJECTIVES = {
    "perlm": "PERT's permuted language model (PerLM): whole-word N-grams are shuffled and the model "
             "predicts, for each selected position, where its original token now stands",
    "mlm": "BERT's masked language model (MLM) with whole-word masking",
}
_PIPELINE = {"QA": "question-answering", "MLM": "fill-mask"}


def _short(value: Any) -> Any:
    """File paths shrink to their names: a card is published, local paths mean nothing elsewhere."""
    if isinstance(value, str) and ("/" in value or "\\" in value):
        return Path(value).name
    if isinstance(value, list):
        return [_short(v) for v in value]
    return value


def _metric_rows(training: dict[str, Any]) -> list[str]:
    rows = []
    for split in ("eval", "dev", "test"):
        metrics = training.get(split)
        if isinstance(metrics, dict):
            rows += [f"| {split} | {k} | {v:.4f} |" if isinstance(v, float) else f"| {split} | {k} | {v} |"
                     for k, v in metrics.items() if isinstance(v, int | float)]
    return rows


def render_model_card(info: ModelInfo, name: str | None = None) -> str:
    """Markdown with Hugging Face metadata: what the model is, how it was trained, how to load it."""
    name = name or info.name
    training = info.training or {}
    heads = ", ".join(f"{h} ({d})" if d else h for h, d in info.heads.items()) or "none (encoder only)"
    if "classification" in info.heads:
        kind = info.heads["classification"].split(",")[0]
        pipeline = "token-classification" if kind == "token" else "text-classification"
    else:
        pipeline = next((p for h, p in _PIPELINE.items() if h in info.heads), "feature-extraction")
    meta = ["---", "library_name: transformers", f"pipeline_tag: {pipeline}", "tags:", "- bert", "- pert"]
    if info.language:
        meta.insert(1, f"language: {info.language}")
    lines = meta + ["---", "", f"# {name}", ""]
    objective = training.get("objective")
    what = "A BERT encoder"
    if objective in _OBJECTIVES:
        what += f" pre-trained with {_OBJECTIVES[objective]}"
    if training.get("task"):
        what += f", fine-tuned for {training['task']}"
    if training.get("converted_from"):
        what += f", converted from a {training['converted_from']}"
    lines += [what + ". Written by [pert](https://arxiv.org/abs/2203.06906) (an open toolkit for PERT); "
              "it loads with plain `transformers`, no pert code needed.", ""]
    vocab = f"{info.vocab_tokens or info.vocab_size:,} WordPiece tokens, {casing(info)}"
    lines += ["## Model", "", "| | |", "|---|---|",
              f"| architecture | BERT, {info.layers} layers, hidden {info.hidden}, "
              f"{info.attention_heads} attention heads, intermediate {info.intermediate} |",
              f"| parameters | {human(info.parameters)} ({info.parameters:,}) |",
              f"| vocabulary | {vocab} |",
              f"| max sequence length | {info.max_positions} |",
              f"| heads | {heads} |",
              f"| dtype | {', '.join(sorted(info.dtypes))} |", ""]
    lines += ["## Training", ""]
    if not training:
        lines += ["Not recorded (the folder has no pert_training.json).", ""]
    else:
        facts = [("objective", objective), ("task", training.get("task")), ("steps", training.get("steps")),
                 ("best step", training.get("best_step")),
                 ("tokens seen", human(training["tokens"]) if training.get("tokens") else None),
                 ("data", _short(training.get("data"))),
                 ("initialised from", _short(training.get("init_from"))),
                 ("base model", _short(training.get("base_model"))),
                 ("converted from", training.get("converted_from")),
                 ("source checkpoint", _short(training.get("source"))), ("seed", training.get("seed"))]
        for label, value in facts:
            if value not in (None, "", []):
                text = ", ".join(map(str, value)) if isinstance(value, list) else value
                lines.append(f"- {label}: {text}")
        lines.append("")
        rows = _metric_rows(training)
        if rows:
            lines += ["| split | metric | value |", "|---|---|---|", *rows, ""]
        for note in training.get("notes", []):
            lines += [f"> **Note:** {note}", ""]
        if isinstance(training.get("config"), dict):
            lines += ["<details><summary>Full training configuration</summary>", "", "```json",
                      json.dumps({k: _short(v) for k, v in training["config"].items()}, indent=2,
                                 ensure_ascii=False), "```", "", "</details>", ""]
    loads = [("BertModel", "hidden states")]  # (class, what it gives)
    if "MLM" in info.heads:
        loads.append(("BertForMaskedLM", "masked-token predictions"))
    if "QA" in info.heads:
        loads.append(("BertForQuestionAnswering", "answer spans"))
    if "classification" in info.heads:
        kind = info.heads["classification"].split(",")[0]
        cls = {"token": "BertForTokenClassification", "multiple choice": "BertForMultipleChoice"}.get(
            kind, "BertForSequenceClassification")
        loads.append((cls, "labels"))
    classes = ", ".join(c for c, _ in loads)
    lines += ["## Use", "", "```python", f"from transformers import AutoTokenizer, {classes}", "",
              f'tokenizer = AutoTokenizer.from_pretrained("path/to/{name}")']
    lines += [f'model = {c}.from_pretrained("path/to/{name}")  # {gives}' for c, gives in loads]
    lines += ["```", ""]
    if "PerLM" in info.heads:
        lines += ["The PerLM head (`perlm_head.*`) is pert's own; transformers classes ignore it. Continue "
                  f"pre-training with `pert pretrain --init-from path/to/{name}`.", ""]
    return "\n".join(lines)


def write_model_card(folder: str | Path, name: str | None = None) -> Path:
    """Write ``README.md`` describing the model folder; returns its path."""
    folder = Path(folder)
    card = folder / "README.md"
    card.write_text(render_model_card(model_info(folder), name), encoding="utf-8")
    return card
