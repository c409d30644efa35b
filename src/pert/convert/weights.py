"""The weight files of a Hugging Face folder: find them, read them safely, check them against config.json.

Only two formats are read: safetensors, and ``pytorch_model.bin`` unpickled with ``weights_only=True``
(tensors and plain containers, nothing that can run code). Every error names the file and the problem.
"""

from __future__ import annotations

import json
import logging
import pickle
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from transformers import BertConfig

log = logging.getLogger(__name__)

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
_OTHER_FORMATS = {"tf_model.h5": "TensorFlow 2 (Keras h5)", "flax_model.msgpack": "Flax"}


def weight_files(path: str | Path) -> list[Path]:
    """The files holding a folder's weights: safetensors first, then ``pytorch_model.bin``; shards listed."""
    path = Path(path)
    for name in WEIGHT_FILES:
        file = path / name
        if not file.is_file():
            continue
        if not name.endswith(".index.json"):
            return [file]
        try:
            weight_map = json.loads(file.read_text("utf-8"))["weight_map"]
            shards = sorted({path / str(s) for s in weight_map.values()})
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"{file}: not a valid shard index (expected a JSON object with "
                             f"'weight_map'): {e}") from e
        for shard in shards:
            if not shard.is_file():
                raise FileNotFoundError(f"{file}: lists shard {shard.name}, which is missing")
        return shards
    for name, kind in _OTHER_FORMATS.items():
        if (path / name).is_file():
            raise ValueError(f"{path}: only {kind} weights ({name}); pert reads model.safetensors or "
                             "pytorch_model.bin")
    if any(path.glob("*.index")):
        raise FileNotFoundError(f"{path}: this is a TensorFlow checkpoint, not a Hugging Face folder; "
                                f"convert it first: pert convert tf1 {path} --out NEW_FOLDER")
    raise FileNotFoundError(f"{path}: no weights (expected model.safetensors or pytorch_model.bin)")


def load_torch_file(file: str | Path) -> dict[str, torch.Tensor]:
    """A ``pytorch_model.bin`` unpickled with ``weights_only=True``; anything but tensors is refused."""
    file = Path(file)
    try:
        state = torch.load(file, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(file))
    except pickle.UnpicklingError as e:
        reason = str(e).strip().splitlines()
        detail = next((line.strip() for line in reason if "global" in line.lower()),
                      reason[0] if reason else "")
        raise ValueError(f"{file}: refused to load: the pickle holds objects other than tensors ({detail}). "
                         "pert never unpickles arbitrary objects; if you trust its origin, convert it to "
                         "model.safetensors first") from e
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as e:
        raise ValueError(f"{file}: not a readable PyTorch checkpoint (truncated or corrupt?): "
                         f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        keys = f" with keys {list(state)[:5]}" if isinstance(state, dict) else ""
        raise ValueError(f"{file}: expected a mapping of parameter names to tensors, got "
                         f"{type(state).__name__}{keys}")
    return state


def tensor_shapes(path: str | Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """Name -> (shape, dtype) of every tensor of a folder; safetensors are read from their header only."""
    out: dict[str, tuple[tuple[int, ...], str]] = {}
    for file in weight_files(path):
        if file.suffix == ".safetensors":
            try:
                with safe_open(str(file), framework="pt") as f:
                    for key in f.keys():
                        s = f.get_slice(key)
                        dtype = _SAFETENSORS_DTYPES.get(s.get_dtype(), s.get_dtype())
                        out[key] = (tuple(s.get_shape()), dtype)
            except (SafetensorError, OSError) as e:
                raise ValueError(f"{file}: not a readable safetensors file (truncated or corrupt?): "
                                 f"{e}") from e
        else:
            for key, t in load_torch_file(file).items():
                out[key] = (tuple(t.shape), str(t.dtype).removeprefix("torch."))
    return out


_SAFETENSORS_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64",
                       "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
                       "BOOL": "bool"}


def canonical_key(key: str) -> str:
    """A checkpoint key as PertForPreTraining names it: ``bert.`` prefix, LayerNorm weight/bias."""
    if key.endswith(".gamma"):
        key = key[: -len("gamma")] + "weight"
    elif key.endswith(".beta"):
        key = key[: -len("beta")] + "bias"
    if key.startswith(("embeddings.", "encoder.", "pooler.")):
        key = "bert." + key
    return key


def expected_shapes(config: BertConfig) -> dict[str, tuple[int, ...]]:
    """Shapes of every tensor of a PertForPreTraining with an MLM head, built on the meta device."""
    from pert.modeling import PertForPreTraining

    cfg = BertConfig.from_dict(config.to_dict())
    cfg.pert_mlm_head = True
    with torch.device("meta"):
        model = PertForPreTraining(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def vocab_size_of(vocab: Path) -> int:
    """Number of tokens of a vocab.txt (one per line)."""
    with open(vocab, encoding="utf-8") as f:
        return sum(1 for _ in f)


def check_model_folder(path: str | Path, config: BertConfig) -> dict[str, tuple[tuple[int, ...], str]]:
    """Refuse a folder whose weights are unreadable, unsafe, or do not fit its config.json and vocab.txt.

    Returns the tensor shapes it read. Heads of fine-tuned models (``classifier``, ``qa_outputs``) are
    not checked: their sizes depend on the task, not on the config.
    """
    path = Path(path)
    shapes = tensor_shapes(path)
    expected = expected_shapes(config)
    files = ", ".join(f.name for f in weight_files(path))
    for key, (shape, _) in shapes.items():
        want = expected.get(canonical_key(key))
        if want is not None and shape != want:
            raise ValueError(f"{path / files}: tensor {key} has shape {list(shape)} but config.json "
                             f"(vocab_size={config.vocab_size}, hidden_size={config.hidden_size}, "
                             f"intermediate_size={config.intermediate_size}, max_position_embeddings="
                             f"{config.max_position_embeddings}) implies {list(want)}")
    vocab = path / "vocab.txt"
    if vocab.is_file():
        n = vocab_size_of(vocab)
        if n > config.vocab_size:
            raise ValueError(f"{vocab}: {n} tokens but config.json has vocab_size={config.vocab_size}: "
                             f"tokens {config.vocab_size}..{n - 1} would have no embedding")
        if n < config.vocab_size:
            log.info("%s: %d tokens for %d embedding rows (the extra rows are unused)", vocab, n,
                     config.vocab_size)
    return shapes
