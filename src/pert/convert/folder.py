"""What a model folder says about itself: its config.json and pert's record of how it was trained.

Read before any weights, by every verb that opens a model (``pert.models``) and by ``pert info``; a file that is
not what it should be is refused in one line naming the file and the field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers import BertConfig

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


def open_folder(model: str | Path, revision: str | None = None) -> tuple[Path, Any, dict[str, Any]]:
    """(folder, BertConfig, training record) of a folder or Hub id, without touching the weights (``pert info``)."""
    from pert.hub import resolve_model

    path = resolve_model(model, revision)
    if path.is_dir() and not (path / "config.json").is_file() and any(path.glob("*.index")):
        raise FileNotFoundError(f"{path}: a TensorFlow checkpoint, not a Hugging Face folder; convert it "
                                f"first: pert convert tf1 {path} --out NEW_FOLDER")
    return path, load_config(path), read_training_info(path)
