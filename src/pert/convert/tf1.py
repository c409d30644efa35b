"""Convert a TF1 BERT/PERT checkpoint into a pert / Hugging Face folder.

    pert convert tf1 chinese_pert_base_L-12_H-768_A-12/ --out pert-base

The checkpoint follows Google BERT's variable layout (``bert/embeddings/word_embeddings``,
``bert/encoder/layer_N/attention/self/query/kernel``, ``bert/pooler/dense/*``, ``cls/predictions/*``);
kernels are stored (in, out) and become PyTorch's (out, in). Optimizer slots are skipped, anything
else that has no place in the model is listed by name, and a missing encoder variable is an error.
TensorFlow is not needed: the checkpoint files are read by :mod:`pert.convert.tf_bundle`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import BertConfig

from pert.convert.config import ConvertConfig
from pert.convert.hf import save_model_folder
from pert.convert.tf_bundle import TFCheckpoint
from pert.convert.weights import vocab_size_of
from pert.modeling import PertForPreTraining
from pert.text.tokenizer import load_tokenizer

log = logging.getLogger(__name__)

CONFIG_NAMES = ("pert_config.json", "bert_config.json", "config.json")
OPTIMIZER_SLOTS = ("adam_m", "adam_v")
_REQUIRED_CONFIG = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                    "intermediate_size")
_OPTIONAL_CONFIG = ("hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob",
                    "max_position_embeddings", "type_vocab_size", "initializer_range", "layer_norm_eps")
RANDOM_MLM_NOTE = ("The MLM head (cls/predictions) was converted as found (--keep-mlm-head). HFL's FAQ states "
                   "that the released PERT checkpoints carry a randomly initialised MLM head: do not use it for "
                   "masked-token prediction unless you trained it yourself.")
DROPPED_MLM_NOTE = ("The checkpoint's MLM head (cls/predictions) was left out: HFL's FAQ states that the released "
                    "PERT checkpoints carry a randomly initialised one. `pert convert tf1 --keep-mlm-head` keeps it.")
_FIXED = {
    "bert/embeddings/word_embeddings": "bert.embeddings.word_embeddings.weight",
    "bert/embeddings/position_embeddings": "bert.embeddings.position_embeddings.weight",
    "bert/embeddings/token_type_embeddings": "bert.embeddings.token_type_embeddings.weight",
    "cls/predictions/output_bias": "cls.predictions.bias",
}
_LEAF = {"kernel": "weight", "bias": "bias", "gamma": "weight", "beta": "bias"}


@dataclass
class ConvertReport:
    """What a conversion did."""

    out: Path
    converted: list[str]  # TF variable names
    parameters: int
    skipped_optimizer: int
    unmapped: list[str]
    mlm_head: bool  # kept in the folder
    pooler: bool
    global_step: int | None
    notes: list[str] = field(default_factory=list)


def hf_name(tf_name: str) -> str | None:
    """Google BERT variable name -> PyTorch parameter name (None when the name has no BERT shape)."""
    if tf_name in _FIXED:
        return _FIXED[tf_name]
    *path, leaf = tf_name.split("/")
    if not path or leaf not in _LEAF:
        return None
    path = [f"layer.{p[len('layer_'):]}" if p.startswith("layer_") and p[6:].isdigit() else p for p in path]
    return ".".join([*path, _LEAF[leaf]])


def encoder_variables(num_layers: int) -> list[str]:
    """The TF variable names a BERT encoder of ``num_layers`` layers must have (pooler excluded)."""
    tables = ("word_embeddings", "position_embeddings", "token_type_embeddings")
    names = [f"bert/embeddings/{t}" for t in tables]
    names += ["bert/embeddings/LayerNorm/gamma", "bert/embeddings/LayerNorm/beta"]
    for i in range(num_layers):
        p = f"bert/encoder/layer_{i}"
        for dense in ("attention/self/query", "attention/self/key", "attention/self/value",
                      "attention/output/dense", "intermediate/dense", "output/dense"):
            names += [f"{p}/{dense}/kernel", f"{p}/{dense}/bias"]
        for norm in ("attention/output/LayerNorm", "output/LayerNorm"):
            names += [f"{p}/{norm}/gamma", f"{p}/{norm}/beta"]
    return names


POOLER_VARIABLES = ["bert/pooler/dense/kernel", "bert/pooler/dense/bias"]
MLM_VARIABLES = ["cls/predictions/transform/dense/kernel", "cls/predictions/transform/dense/bias",
                 "cls/predictions/transform/LayerNorm/gamma", "cls/predictions/transform/LayerNorm/beta",
                 "cls/predictions/output_bias"]


def find_beside(ckpt: TFCheckpoint, names: tuple[str, ...], what: str, given: str | None) -> Path:
    """A file given by flag, or the first of ``names`` in the checkpoint's folder."""
    if given:
        path = Path(given)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such {what} file")
        return path
    folder = ckpt.index_file.parent
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder}: no {what} beside the checkpoint (looked for {', '.join(names)}); "
                            f"pass --{'model-config' if what == 'config' else 'vocab'} FILE")


def read_bert_config(path: Path) -> BertConfig:
    """A Google BERT / PERT config JSON -> BertConfig; errors name the file and field."""
    try:
        raw = json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object of BERT settings")
    missing = [k for k in _REQUIRED_CONFIG if k not in raw]
    if missing:
        raise ValueError(f"{path}: missing field(s) {', '.join(missing)} (a BERT config needs "
                         f"{', '.join(_REQUIRED_CONFIG)})")
    for k in _REQUIRED_CONFIG:
        if not isinstance(raw[k], int) or raw[k] <= 0:
            raise ValueError(f"{path}: field {k} must be a positive integer, not {raw[k]!r}")
    if raw["hidden_size"] % raw["num_attention_heads"]:
        raise ValueError(f"{path}: hidden_size {raw['hidden_size']} is not a multiple of "
                         f"num_attention_heads {raw['num_attention_heads']}")
    # Google's "gelu" is the tanh approximation; transformers' "gelu" is the exact (erf) one. Every
    # published conversion of BERT, HFL's included, keeps "gelu": the two differ by at most 4.8e-4.
    return BertConfig(**{k: raw[k] for k in _REQUIRED_CONFIG + _OPTIONAL_CONFIG if k in raw})


def _check_out(out: Path, ckpt: TFCheckpoint) -> None:
    if out.resolve() == ckpt.index_file.parent.resolve():
        raise ValueError(f"--out {out}: is the checkpoint's own folder; choose a new folder")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "config.json").is_file())):
        raise ValueError(f"--out {out}: exists and is not a model folder; refusing to replace it")


def convert_tf1(cfg: ConvertConfig) -> ConvertReport:
    """Read the checkpoint, its config and vocab.txt; write a pert folder (safetensors) to ``cfg.out``."""
    from pert.hub import TF1_FILES, resolve_model

    ckpt = TFCheckpoint(resolve_model(cfg.source, cfg.revision, TF1_FILES))
    out = Path(cfg.out)
    _check_out(out, ckpt)
    config_file = find_beside(ckpt, CONFIG_NAMES, "config", cfg.model_config)
    vocab_file = find_beside(ckpt, ("vocab.txt",), "vocab.txt", cfg.vocab)
    config = read_bert_config(config_file)
    n_vocab = vocab_size_of(vocab_file)
    if n_vocab > config.vocab_size:
        raise ValueError(f"{vocab_file}: {n_vocab} tokens but {config_file.name} has vocab_size="
                         f"{config.vocab_size}: tokens {config.vocab_size}..{n_vocab - 1} would have no "
                         "embedding")
    tokenizer = load_tokenizer(vocab_file, cfg.lowercase)

    names = set(ckpt.names)
    missing = [n for n in encoder_variables(config.num_hidden_layers) if n not in names]
    if missing:
        raise ValueError(f"{ckpt.index_file}: encoder variable {missing[0]} is missing"
                         + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                         + f"; {config_file.name} asks for {config.num_hidden_layers} layers")
    has_mlm = any(n.startswith("cls/predictions/") for n in names)
    keep_mlm = has_mlm and cfg.keep_mlm_head
    if keep_mlm:
        absent = [n for n in MLM_VARIABLES if n not in names]
        if absent:
            raise ValueError(f"{ckpt.index_file}: MLM head incomplete: {', '.join(absent)} missing")
    has_pooler = all(n in names for n in POOLER_VARIABLES)
    config.pert_mlm_head = keep_mlm
    model = PertForPreTraining(config)
    expected = model.state_dict()

    state: dict[str, torch.Tensor] = {}
    converted, unmapped, skipped = [], [], 0
    for name in ckpt.names:
        if name == "global_step" or name.rsplit("/", 1)[-1] in OPTIMIZER_SLOTS:
            skipped += 1
            continue
        if has_mlm and not keep_mlm and name.startswith("cls/predictions/"):
            continue  # left out on purpose (DROPPED_MLM_NOTE)
        target = hf_name(name)
        if target is None or target not in expected or target.startswith("perlm_head."):
            unmapped.append(name)
            continue
        value = ckpt.read(name)
        if name.endswith("/kernel"):
            value = value.T
        want = tuple(expected[target].shape)
        if value.shape != want:
            tf_want = want[::-1] if name.endswith("/kernel") else want
            tf_has = value.shape[::-1] if name.endswith("/kernel") else value.shape
            raise ValueError(f"{ckpt.index_file}: variable {name} has shape {list(tf_has)} but "
                             f"{config_file.name} implies {list(tf_want)}")
        state[target] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
        converted.append(name)
    if keep_mlm:  # Google BERT has one output bias; transformers keeps it on the decoder as well
        state["cls.predictions.decoder.bias"] = state["cls.predictions.bias"]
    result = model.load_state_dict(state, strict=False)
    left = [k for k in result.missing_keys if not k.startswith(("perlm_head.", "bert.pooler."))
            and k != "cls.predictions.decoder.weight"]  # tied to the word embeddings
    if left:  # encoder_variables() and MLM_VARIABLES cover every parameter; this guards the mapping itself
        raise ValueError(f"{ckpt.index_file}: no variable converted into {', '.join(left[:5])}")

    global_step = int(ckpt.read("global_step")) if "global_step" in ckpt else None
    notes = []
    if keep_mlm:
        notes.append(RANDOM_MLM_NOTE)
        log.warning(RANDOM_MLM_NOTE)
    elif has_mlm:
        notes.append(DROPPED_MLM_NOTE)
        log.info(DROPPED_MLM_NOTE)
    if not has_pooler:
        notes.append("The checkpoint has no pooler (bert/pooler/dense), so neither has this folder; "
                     "transformers initialises it randomly on loading.")
        log.warning("%s: no pooler in the checkpoint; it starts from random initialisation", ckpt.index_file)
    if unmapped:
        log.warning("%d variable(s) not converted (no place in a BERT/PERT model): %s", len(unmapped),
                    ", ".join(unmapped))
    info = {"converted_from": "TensorFlow 1 checkpoint", "source": ckpt.prefix.name,
            "config_file": config_file.name, "global_step": global_step, "unmapped_variables": unmapped,
            "notes": notes}
    exclude = ["perlm_head."] + ([] if has_pooler else ["bert.pooler."])
    save_model_folder(model, tokenizer, out, info, exclude=exclude)
    params = sum(int(np.prod(ckpt.entries[n].shape)) for n in converted)
    return ConvertReport(out=out, converted=converted, parameters=params, skipped_optimizer=skipped,
                         unmapped=unmapped, mlm_head=keep_mlm, pooler=has_pooler, global_step=global_step,
                         notes=notes)
