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
from transformers import PreTrainedTokenizerBase

from pert.convert.folder import TRAINING_INFO, load_config
from pert.convert.weights import check_model_folder
from pert.modeling import PertForPreTraining
from pert.text.tokenizer import save_tokenizer

log = logging.getLogger(__name__)

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
