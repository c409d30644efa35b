"""The model card (README.md) of every folder pert writes, built from what the folder holds.

The metadata is huggingface_hub's ``ModelCardData`` (license, base_model, datasets, language, pipeline_tag,
metrics and ``model-index`` eval results from pert's own scores), so the Hub shows it as it shows any card.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pert.convert.info import ModelInfo, casing, human, model_info

GENERIC_NAMES = ("final", "best", "model", "checkpoint")
# Hub datasets of the tasks whose data is published there under a known id.
TASK_DATASETS = {"cmrc2018": "hfl/cmrc2018", "squad1": "rajpurkar/squad", "squad2": "rajpurkar/squad_v2",
                 "xnli": "facebook/xnli"}
_TASK_TYPES = {"question-answering": "question-answering", "token-classification": "token-classification",
               "text-classification": "text-classification"}

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


def scores(training: dict[str, Any]) -> list[tuple[str, str, float]]:
    """(split, metric, value) of the scores pert recorded: real numbers only, not counts or thresholds."""
    out = []
    for split in ("eval", "dev", "test"):
        metrics = training.get(split)
        if isinstance(metrics, dict):
            out += [(split, k, v) for k, v in metrics.items()
                    if isinstance(v, float) and math.isfinite(v) and "thresh" not in k and "total" not in k]
    return out


def card_title(folder: str | Path, training: dict[str, Any] | None) -> str:
    """The model's name: base model + task for a fine-tuned folder, the run's name for ``final``/``best``."""
    folder = Path(folder)
    training = training or {}
    if training.get("task") and training.get("base_model"):
        base = Path(str(training["base_model"]).rstrip("/"))
        base_name = base.parent.name if base.name in GENERIC_NAMES and base.parent.name else base.name
        return f"{base_name}-{training['task']}"
    if folder.name in GENERIC_NAMES or folder.name.startswith(("step_", "step-", "seed-")):
        return folder.resolve().parent.name or folder.name
    return folder.name


def _base_license(base: str | None) -> str | None:
    """The license of the base model's card, when it is at hand (a local folder or the Hub cache)."""
    if not base:
        return None
    from huggingface_hub import ModelCard, try_to_load_from_cache

    from pert.hub import is_hub_id

    readme: Any = Path(base) / "README.md"
    if not readme.is_file() and is_hub_id(base):
        readme = try_to_load_from_cache(base, "README.md")
    if not isinstance(readme, str | Path) or not Path(readme).is_file():
        return None
    try:
        return ModelCard.load(readme).data.license
    except Exception:  # a card we cannot parse has no license we can repeat
        return None


def _value(v: Any) -> str:
    if isinstance(v, list | tuple):
        return ", ".join(map(str, v))
    if isinstance(v, dict):
        return ", ".join(f"{k}={_value(x)}" for k, x in v.items())
    return f"{v:g}" if isinstance(v, float) else str(v)


def _table(rows: dict[str, Any]) -> list[str]:
    kept = {k: v for k, v in rows.items() if v not in (None, "", [], {})}
    if not kept:
        return []
    return ["| | |", "|---|---|", *(f"| {k} | {_value(_short(v))} |" for k, v in kept.items()), ""]


def pipeline_tag(info: ModelInfo) -> str:
    """What the folder does in a transformers pipeline: its fine-tuned head's task, fill-mask for a kept
    MLM head, else feature-extraction (a PerLM head is pert's own, unknown to pipelines)."""
    if "classification" in info.heads:
        kind = info.heads["classification"].split(",")[0]
        return "token-classification" if kind == "token" else "text-classification"
    return next((p for h, p in _PIPELINE.items() if h in info.heads), "feature-extraction")


def card_data(info: ModelInfo, name: str) -> Any:
    """huggingface_hub ``ModelCardData`` of a folder."""
    from huggingface_hub import EvalResult, ModelCardData

    from pert.hub import is_hub_id

    training = info.training or {}
    base = training.get("base_model") or (training.get("config") or {}).get("init_from")
    pipeline = pipeline_tag(info)
    task = training.get("task")
    dataset = TASK_DATASETS.get(task) if task else None
    results = [EvalResult(task_type=_TASK_TYPES.get(pipeline, pipeline), dataset_type=dataset or task or "text",
                          dataset_name=task or Path(str(_short(training.get("data")) or "held-out text")).name,
                          dataset_split="validation" if split in ("dev", "eval") else split,
                          metric_type=metric, metric_name=f"{metric} ({split})", metric_value=round(value, 4))
               for split, metric, value in scores(training)]
    return ModelCardData(
        model_name=name, language=info.language, license=training.get("license") or _base_license(base),
        library_name="transformers", pipeline_tag=pipeline, tags=["bert", "pert"] + ([task] if task else []),
        base_model=str(base) if base and is_hub_id(str(base)) else None, datasets=[dataset] if dataset else None,
        metrics=sorted({r.metric_type for r in results}) or None, eval_results=results or None)


def render_model_card(info: ModelInfo, name: str | None = None) -> str:
    """The Markdown body of the card: what the model is, how it was trained, how to load it."""
    from pert.hub import is_hub_id


    name = name or info.name
    training = info.training or {}
    heads = ", ".join(f"{h} ({d})" if d else h for h, d in info.heads.items()) or "none (encoder only)"
    lines = [f"# {name}", ""]
    objective = training.get("objective")
    what = "A BERT encoder"
    if objective in _OBJECTIVES:
        what += f" pre-trained with {_OBJECTIVES[objective]}"
    if training.get("task"):
        what += f", fine-tuned for {training['task']}" + (f" from {_short(training['base_model'])}"
                                                          if training.get("base_model") else "")
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
        base = training.get("base_model")
        facts = [("objective", objective), ("task", training.get("task")), ("steps", training.get("steps")),
                 ("best step", training.get("best_step")),
                 ("tokens seen", human(training["tokens"]) if training.get("tokens") else None),
                 ("data", _short(training.get("data"))),
                 ("initialised from", _short((training.get("config") or {}).get("init_from"))),
                 ("base model", base if isinstance(base, str) and is_hub_id(base) else _short(base)),
                 ("max sequence length", training.get("max_seq_len")), ("precision", training.get("precision")),
                 ("labels", training.get("labels")),
                 ("converted from", training.get("converted_from")),
                 ("source checkpoint", _short(training.get("source"))), ("seed", training.get("seed"))]
        for label, value in facts:
            if value not in (None, "", []):
                text = ", ".join(map(str, value)) if isinstance(value, list) else value
                lines.append(f"- {label}: {text}")
        lines.append("")
        rows = scores(training)
        if rows:
            lines += ["| split | metric | value |", "|---|---|---|",
                      *(f"| {split} | {metric} | {value:.4f} |" for split, metric, value in rows), ""]
        for note in training.get("notes", []):
            lines += [f"> **Note:** {note}", ""]
        hyper = training.get("hyperparameters") or training.get("config")
        if isinstance(hyper, dict):
            lines += ["### Hyper-parameters", "", *_table(hyper)]
        if isinstance(training.get("task_options"), dict):
            lines += ["### Task options", "", *_table(training["task_options"])]
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
    """Write ``README.md`` describing the model folder (metadata from ``card_data``); returns its path."""
    from huggingface_hub import ModelCard

    folder = Path(folder)
    info = model_info(folder)
    name = name or card_title(folder, info.training)
    card = folder / "README.md"
    text = f"---\n{card_data(info, name).to_yaml()}\n---\n\n{render_model_card(info, name)}"
    ModelCard(text, ignore_metadata_errors=False).save(card)
    return card
