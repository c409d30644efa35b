"""Hugging Face model folders: load any BERT/PERT folder for pre-training, write pert folders."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import transformers
from transformers import BertConfig, PreTrainedTokenizerBase

from pert.modeling import PertForPreTraining

log = logging.getLogger(__name__)

TRAINING_INFO = "pert_training.json"


def load_config(path: str | Path) -> BertConfig:
    """The BertConfig of a model folder; errors name the file."""
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        raise FileNotFoundError(f"{path}: not a model folder (no config.json)")
    try:
        return BertConfig.from_pretrained(str(path))
    except (OSError, ValueError) as e:
        raise ValueError(f"{cfg}: cannot be read as a BERT config: {e}") from e


def load_pretraining_model(path: str | Path, objective: str = "perlm") -> PertForPreTraining:
    """Any BERT/PERT Hugging Face folder -> PertForPreTraining. Absent heads start random; the log says so."""
    config = load_config(path)
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
        raise ValueError(f"{path}: encoder weights missing from the checkpoint: {', '.join(encoder_missing[:5])}"
                         + (" ..." if len(encoder_missing) > 5 else ""))
    for head, prefix in (("PerLM", "perlm_head."), ("MLM", "cls.")):
        if any(k.startswith(prefix) for k in missing):
            log.warning("%s: no %s head in the checkpoint; it starts from random initialisation", path, head)
    return model


def save_model_folder(model: transformers.PreTrainedModel, tokenizer: PreTrainedTokenizerBase | None,
                      out_dir: str | Path, training_info: dict[str, Any] | None = None) -> Path:
    """Write a Hugging Face folder (config.json, model.safetensors, tokenizer files) atomically."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    if training_info is not None:
        (tmp / TRAINING_INFO).write_text(json.dumps(training_info, indent=2, ensure_ascii=False), encoding="utf-8")
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
