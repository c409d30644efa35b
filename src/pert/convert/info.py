"""What a model folder holds: architecture, size, vocabulary, heads, dtype and how it was trained.

Read from config.json, the weight files' headers (no weights are loaded for safetensors), the
tokenizer files and pert_training.json. Used by ``pert info`` and by the model card.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pert.convert.folder import open_folder
from pert.convert.weights import canonical_key, config_mismatches, tensor_shapes, vocab_size_of, weight_files
from pert.text.tokenizer import vocab_is_uncased

# Weight-name prefixes of the heads pert and transformers put on top of BERT.
HEADS = {
    "perlm_head.": "PerLM",
    "cls.predictions.": "MLM",
    "cls.seq_relationship.": "NSP",
    "qa_outputs.": "QA",
    "classifier.": "classification",
}


@dataclass
class ModelInfo:
    name: str
    architectures: list[str]
    layers: int
    hidden: int
    attention_heads: int
    intermediate: int
    max_positions: int
    vocab_size: int  # embedding rows (config.json)
    vocab_tokens: int | None  # lines of vocab.txt (or tokens of tokenizer.json)
    lowercase: bool | None
    casing_source: str
    language: str | None
    parameters: int
    encoder_parameters: int
    heads: dict[str, str]  # head -> detail
    pooler: bool
    dtypes: dict[str, int]  # dtype -> number of tensors
    weight_files: list[str]
    training: dict[str, Any] | None = None
    extra_keys: list[str] = field(default_factory=list)  # weights of no known part
    mismatches: list[str] = field(default_factory=list)  # where config.json disagrees with the weights


def _guess_language(tokens: list[str]) -> str | None:
    """zh for a vocabulary made mostly of CJK characters (Google's Chinese BERT: ~14k of 21k), else en."""
    cjk = sum(len(t) == 1 and "\u4e00" <= t <= "\u9fff" for t in tokens)
    return None if not tokens else "zh" if cjk > len(tokens) / 4 else "en"


def _vocabulary(path: Path) -> tuple[list[str] | None, str]:
    """(tokens, file) of a folder: vocab.txt's lines, else the WordPiece vocabulary of tokenizer.json."""
    vocab = path / "vocab.txt"
    if vocab.is_file():
        with open(vocab, encoding="utf-8", newline="") as f:
            return [t.rstrip("\r") for t in f.read().split("\n")][:vocab_size_of(vocab)], vocab.name
    file = path / "tokenizer.json"
    if file.is_file():
        try:
            table = json.loads(file.read_text("utf-8")).get("model", {}).get("vocab")
        except (json.JSONDecodeError, AttributeError) as e:
            raise ValueError(f"{file}: not a valid tokenizer.json ({e})") from e
        if isinstance(table, dict):
            return [t for t, _ in sorted(table.items(), key=lambda kv: kv[1])], file.name
    return None, ""


def model_info(path: str | Path, revision: str | None = None) -> ModelInfo:
    """Describe a Hugging Face / pert model folder (or Hub id) without loading its weights into a model."""
    path, config, training = open_folder(path, revision)
    shapes = tensor_shapes(path)
    tied = getattr(config, "tie_word_embeddings", True)
    params = encoder = 0
    heads: dict[str, str] = {}
    extra: list[str] = []
    dtypes: dict[str, int] = {}
    for key, (shape, dtype) in shapes.items():
        if key.endswith("position_ids"):  # a buffer some old checkpoints saved
            continue
        key = canonical_key(key)
        if tied and key == "cls.predictions.decoder.weight":  # the word embeddings again (.bin files)
            continue
        if key == "cls.predictions.decoder.bias" and "cls.predictions.bias" in shapes:
            continue  # transformers ties it to cls.predictions.bias: one parameter

        n = math.prod(shape)
        params += n
        dtypes[dtype] = dtypes.get(dtype, 0) + 1
        if key.startswith("bert."):
            encoder += n
            continue
        head = next((h for prefix, h in HEADS.items() if key.startswith(prefix)), None)
        if head is None:
            extra.append(key)
        elif head not in heads:
            heads[head] = ""
        if key in ("qa_outputs.weight", "classifier.weight"):
            heads[head] = f"{shape[0]} outputs"
    archs = list(config.architectures or [])
    if "classification" in heads:
        kind = ("token" if any("TokenClassification" in a for a in archs) else
                "multiple choice" if any("MultipleChoice" in a for a in archs) else "sequence")
        heads["classification"] = f"{kind}, {heads['classification']}"
    if "QA" in heads:
        heads["QA"] = "span start/end"
    vocab = path / "vocab.txt"
    tokens, vocab_file = _vocabulary(path)
    lowercase, source = None, "unknown (no vocab.txt or tokenizer_config.json)"
    tok_cfg = path / "tokenizer_config.json"
    if tok_cfg.is_file():
        try:
            value = json.loads(tok_cfg.read_text("utf-8")).get("do_lower_case")
        except json.JSONDecodeError as e:
            raise ValueError(f"{tok_cfg}: not valid JSON ({e})") from e
        if value is not None:
            lowercase, source = bool(value), "tokenizer_config.json"
    if lowercase is None and vocab.is_file():
        lowercase, source = vocab_is_uncased(vocab), "inferred from vocab.txt"
    elif lowercase is None and vocab_file == "tokenizer.json":
        norm = json.loads((path / vocab_file).read_text("utf-8")).get("normalizer") or {}
        if "lowercase" in norm:
            lowercase, source = bool(norm["lowercase"]), "tokenizer.json"
    training = training or None
    return ModelInfo(
        name=path.resolve().name, architectures=archs, layers=config.num_hidden_layers,
        hidden=config.hidden_size, attention_heads=config.num_attention_heads,
        intermediate=config.intermediate_size, max_positions=config.max_position_embeddings,
        vocab_size=config.vocab_size, vocab_tokens=len(tokens) if tokens is not None else None,
        lowercase=lowercase, casing_source=source,
        language=_guess_language(tokens) if tokens else None, parameters=params,
        encoder_parameters=encoder, heads=heads,
        pooler=any(canonical_key(k).startswith("bert.pooler.") for k in shapes),
        dtypes=dtypes, weight_files=[f.name for f in weight_files(path)], training=training, extra_keys=extra,
        mismatches=config_mismatches(config, shapes))


def human(n: float) -> str:
    """1234567 -> '1.23M'."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(int(n))


def casing(info: ModelInfo) -> str:
    return {True: "uncased", False: "cased", None: "casing unknown"}[info.lowercase]


def format_info(info: ModelInfo) -> str:
    """The text ``pert info`` prints."""
    vocab = f"{info.vocab_size:,} embedding rows"
    if info.vocab_tokens is not None:
        vocab = f"{info.vocab_tokens:,} WordPiece tokens ({info.vocab_size:,} embedding rows)" \
            if info.vocab_tokens != info.vocab_size else f"{info.vocab_tokens:,} WordPiece tokens"
    heads = {h: info.heads.get(h) for h in ("PerLM", "MLM", "QA", "classification")}
    head_text = "; ".join(f"{h}: {'yes' + (f' ({d})' if d else '') if d is not None else 'no'}"
                          for h, d in heads.items())
    if "NSP" in info.heads:
        head_text += "; NSP: yes"
    rows = [
        ("folder", info.name),
        ("architecture", f"BERT encoder, {info.layers} layers, hidden {info.hidden}, "
                         f"{info.attention_heads} attention heads, intermediate {info.intermediate}, "
                         f"max positions {info.max_positions}"
                         + (f" (config: {', '.join(info.architectures)})" if info.architectures else "")),
        ("parameters", f"{human(info.parameters)} ({info.parameters:,}; "
                       f"encoder {info.encoder_parameters:,})"),
        ("vocabulary", f"{vocab}, {casing(info)} ({info.casing_source})"
                       + (f", language {info.language}" if info.language else "")),
        ("heads", head_text + ("" if info.pooler else "; no pooler")),
        ("dtype", ", ".join(f"{d}" + (f" ({n} tensors)" if len(info.dtypes) > 1 else "")
                            for d, n in sorted(info.dtypes.items()))),
        ("weights", ", ".join(info.weight_files)),
        ("trained", training_summary(info.training) or "unknown (no pert_training.json)"),
    ]
    if info.extra_keys:
        more = " ..." if len(info.extra_keys) > 5 else ""
        rows.append(("other weights", ", ".join(info.extra_keys[:5]) + more))
    rows += [("MISMATCH", f"{m}; the folder will not load") for m in info.mismatches]
    return "\n".join(f"{k:<13} {v}" for k, v in rows)


def training_summary(training: dict[str, Any] | None) -> str:
    """One line: objective, steps, tokens, task, source and the metrics pert_training.json records."""
    if not training:
        return ""
    parts = []
    labels = (("task", "task"), ("objective", "objective"), ("steps", "steps"), ("best_step", "best step"),
              ("tokens", "tokens"), ("converted_from", "converted from"), ("global_step", "global step"))
    for key, label in labels:
        if training.get(key) is not None:
            value = training[key]
            parts.append(f"{label} {human(value) if key == 'tokens' else value}")
    for key in ("eval", "dev", "test"):
        metrics = training.get(key)
        if isinstance(metrics, dict):
            nums = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, int | float))
            if nums:
                parts.append(f"{key}: {nums}")
    return "; ".join(parts)
