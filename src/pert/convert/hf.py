"""Hugging Face model folders: load any BERT/PERT folder for pre-training, write pert folders."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import transformers
from transformers import BertConfig, PreTrainedTokenizerBase

from pert.convert.weights import check_model_folder
from pert.modeling import PertForPreTraining
from pert.text.tokenizer import save_tokenizer

log = logging.getLogger(__name__)

TRAINING_INFO = "pert_training.json"


def read_training_info(path: str | Path) -> dict[str, Any]:
    """A folder's ``pert_training.json`` (how pert trained it), or {} when it has none."""
    file = Path(path) / TRAINING_INFO
    if not file.is_file():
        return {}
    try:
        info = json.loads(file.read_text("utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{file}: not valid JSON ({e})") from e
    if not isinstance(info, dict):
        raise ValueError(f"{file}: expected a JSON object")
    return info


# the shape fields a BERT config must hold as positive integers, and the numeric ones (absent: BERT's default)
CONFIG_INTS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
               "max_position_embeddings", "type_vocab_size")
CONFIG_FLOATS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range", "layer_norm_eps")


def load_config(path: str | Path) -> BertConfig:
    """The BertConfig of a model folder; a file that is not a JSON object, or a field of the wrong type, is refused
    in one line naming the file and the field."""
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        raise FileNotFoundError(f"{path}: not a model folder (no config.json)")
    try:
        raw = json.loads(cfg.read_text("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{cfg}: not valid JSON ({e})") from e
    if not isinstance(raw, dict):
        raise ValueError(f"{cfg}: expected a JSON object of config fields, got {type(raw).__name__}")
    for key in CONFIG_INTS:
        v = raw.get(key, 1)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{cfg}: field {key!r} must be a positive integer, got {v!r}")
    for key in CONFIG_FLOATS:
        v = raw.get(key, 0.0)
        if not isinstance(v, int | float) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{cfg}: field {key!r} must be a non-negative number, got {v!r}")
    if not isinstance(raw.get("hidden_act", "gelu"), str):
        raise ValueError(f"{cfg}: field 'hidden_act' must be a string, got {raw['hidden_act']!r}")
    try:
        return BertConfig.from_pretrained(str(path))
    except (OSError, ValueError, TypeError) as e:
        raise ValueError(f"{cfg}: cannot be read as a BERT config: {e}") from e


def load_pretraining_model(path: str | Path, objective: str = "perlm") -> PertForPreTraining:
    """Any BERT/PERT Hugging Face folder -> PertForPreTraining. Absent heads start random; the log says so.

    Accepts the layouts of the hfl/* releases: ``architectures`` BertModel, BertForMaskedLM or
    BertForPreTraining; model.safetensors or only pytorch_model.bin (read with ``weights_only=True``).
    Unreadable, unsafe or mis-shaped weights are refused with an error naming the file.
    """
    config = load_config(path)
    check_model_folder(path, config)
    if objective == "mlm":
        config.pert_mlm_head = True
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # we report missing heads ourselves, briefly
    try:
        model, info = PertForPreTraining.from_pretrained(str(path), config=config, output_loading_info=True)
    finally:
        transformers.logging.set_verbosity(verbosity)
    missing = sorted(info["missing_keys"])
    encoder_missing = [k for k in missing if k.startswith("bert.") and not k.startswith("bert.pooler.")]
    if encoder_missing:
        raise ValueError(f"{path}: encoder weights missing from the checkpoint: "
                         f"{', '.join(encoder_missing[:5])}" + (" ..." if len(encoder_missing) > 5 else ""))
    for head, prefix in (("PerLM", "perlm_head."), ("MLM", "cls."), ("pooler", "bert.pooler.")):
        if any(k.startswith(prefix) for k in missing):
            log.warning("%s: no %s head in the checkpoint; it starts from random initialisation", path, head)
    return model


def save_model_folder(model: transformers.PreTrainedModel, tokenizer: PreTrainedTokenizerBase | None,
                      out_dir: str | Path, training_info: dict[str, Any] | None = None, *,
                      exclude: Sequence[str] = ()) -> Path:
    """Write a Hugging Face folder (config.json, model.safetensors, tokenizer files, README.md) atomically.

    ``exclude``: prefixes of weights to leave out (a converter drops the PerLM head it never had).
    """
    from pert.convert.card import card_title, write_model_card

    out_dir = Path(out_dir)
    if tokenizer is not None and len(tokenizer) > model.config.vocab_size:
        raise ValueError(f"{out_dir}: the tokenizer has {len(tokenizer)} tokens but the model only "
                         f"{model.config.vocab_size} embedding rows; the folder would not load")
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    state_dict = None
    if exclude:
        state_dict = {k: v for k, v in model.state_dict().items() if not k.startswith(tuple(exclude))}
    model.save_pretrained(tmp, safe_serialization=True, state_dict=state_dict)
    if isinstance(model, PertForPreTraining) and state_dict is not None and not any(
            k.startswith("perlm_head.") for k in state_dict):
        # Without the PerLM head the folder is a plain BERT checkpoint; say which class loads all of it.
        cfg_file = tmp / "config.json"
        cfg = json.loads(cfg_file.read_text("utf-8"))
        cfg["architectures"] = ["BertForMaskedLM" if hasattr(model, "cls") else "BertModel"]
        cfg_file.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if tokenizer is not None:
        save_tokenizer(tokenizer, tmp, model_max_length=int(model.config.max_position_embeddings))
    if training_info is not None:
        (tmp / TRAINING_INFO).write_text(json.dumps(training_info, indent=2, ensure_ascii=False),
                                         encoding="utf-8")
    write_model_card(tmp, name=card_title(out_dir, training_info))
    if out_dir.exists():
        old = out_dir.with_name(out_dir.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        shutil.rmtree(old)
    else:
        os.replace(tmp, out_dir)
    return out_dir
