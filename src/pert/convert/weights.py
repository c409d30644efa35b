"""The weight files of a Hugging Face folder: find them, read them safely, check them against config.json.

Only two formats are read: safetensors, and ``pytorch_model.bin`` unpickled with ``weights_only=True``
(tensors and plain containers, nothing that can run code). Every error names the file and the problem.
"""

from __future__ import annotations

import json
import logging
import pickle
import re
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


def estimated_parameters(config: BertConfig) -> int:
    """Parameters of the model config.json describes (BERT with its pooler, PerLM and MLM heads), counted
    from its sizes without building anything."""
    h, i, v = config.hidden_size, config.intermediate_size, config.vocab_size
    p, t, n = config.max_position_embeddings, config.type_vocab_size, config.num_hidden_layers
    embeddings = (v + p + t) * h + 2 * h
    layer = 4 * (h * h + h) + 2 * h * i + i + h + 4 * h  # attention, feed-forward, two LayerNorms
    transform = h * h + 3 * h  # dense + LayerNorm of each head
    return embeddings + n * layer + (h * h + h) + (transform + p) + (transform + v)


def available_memory() -> int | None:
    """Bytes of memory this process may still use: the system's available memory, capped by the cgroup's
    limit (containers); None where neither is known."""
    found = []
    try:
        found += [int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text("ascii").splitlines()
                  if line.startswith("MemAvailable:")]
    except (OSError, ValueError, IndexError):
        pass
    cgroup = Path("/sys/fs/cgroup")
    try:
        limit = (cgroup / "memory.max").read_text("ascii").strip()
        if limit != "max":
            found.append(int(limit) - int((cgroup / "memory.current").read_text("ascii")))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


_LAYER = re.compile(r"bert\.encoder\.layer\.(\d+)\.")


def config_mismatches(config: BertConfig, shapes: dict[str, tuple[tuple[int, ...], str]]) -> list[str]:
    """How config.json disagrees with the tensors (``tensor_shapes``), or []. The layer count, the word
    embeddings and the attention heads are checked first, from the sizes alone; only when they agree is the
    model built (on the meta device: no memory) to compare every tensor's shape."""
    problems = []
    layers = {int(m.group(1)) for key in shapes if (m := _LAYER.match(canonical_key(key)))}
    if layers != set(range(config.num_hidden_layers)):
        problems.append(f"the weights hold encoder layers {_ranges(layers)} but config.json has "
                        f"num_hidden_layers={config.num_hidden_layers}")
    word = next((shape for key, (shape, _) in shapes.items()
                 if canonical_key(key) == "bert.embeddings.word_embeddings.weight"), None)
    if word is None:
        problems.append(f"no word embeddings (embeddings.word_embeddings.weight) for config.json's "
                        f"vocab_size={config.vocab_size}, hidden_size={config.hidden_size}")
    elif word != (config.vocab_size, config.hidden_size):
        problems.append(f"tensor embeddings.word_embeddings.weight has shape {list(word)} but config.json has "
                        f"vocab_size={config.vocab_size}, hidden_size={config.hidden_size}")
    heads = config.num_attention_heads
    if heads < 1 or config.hidden_size % heads:
        problems.append(f"config.json's hidden_size={config.hidden_size} is not a multiple of "
                        f"num_attention_heads={heads}")
    if problems:
        return problems
    expected = expected_shapes(config)
    for key, (shape, _) in shapes.items():
        want = expected.get(canonical_key(key))
        if want is not None and shape != want:
            problems.append(f"tensor {key} has shape {list(shape)} but config.json (vocab_size="
                            f"{config.vocab_size}, hidden_size={config.hidden_size}, intermediate_size="
                            f"{config.intermediate_size}, max_position_embeddings="
                            f"{config.max_position_embeddings}) implies {list(want)}")
    return problems


def _bytes(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.0f} MiB"


def _ranges(values: set[int]) -> str:
    """{0, 1, 2, 5} -> '0-2, 5'; an empty set -> 'none'."""
    out, run = [], []
    for v in sorted(values):
        if run and v != run[-1] + 1:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
            run = []
        run.append(v)
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ", ".join(out) or "none"


def check_model_folder(path: str | Path, config: BertConfig) -> dict[str, tuple[tuple[int, ...], str]]:
    """Refuse a folder whose weights are unreadable, unsafe, or do not fit its config.json and vocab.txt, or
    whose model would not fit in memory. Every verb that loads a model folder passes here first.

    Returns the tensor shapes it read. Heads of fine-tuned models (``classifier``, ``qa_outputs``) are
    not checked: their sizes depend on the task, not on the config.
    """
    path = Path(path)
    shapes = tensor_shapes(path)
    files = ", ".join(f.name for f in weight_files(path))
    problems = config_mismatches(config, shapes)
    if problems:
        raise ValueError(f"{path / files}: {problems[0]}"
                         + (f" (and {len(problems) - 1} more mismatches)" if len(problems) > 1 else ""))
    need, free = 4 * estimated_parameters(config), available_memory()
    if free is not None and need > free:
        raise ValueError(f"{path / 'config.json'}: the model it describes has about {need / 4e6:,.0f}M "
                         f"parameters, {_bytes(need)} as float32, more than the {_bytes(free)} of memory "
                         "available")
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
