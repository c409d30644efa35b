"""The fine-tuning task interface and the task registry.

Every downstream task (classification, NER, reading comprehension, word-order restoration) is one
``Task`` subclass registered under a name; the shared loop in ``pert.tasks.loop`` knows nothing else
about it. Usage::

    from pert.tasks import FinetuneConfig, finetune, evaluate
    finetune(FinetuneConfig(task="sst2", model="path/to/bert", data="glue/SST-2", out="runs/sst2",
                            seeds=[1, 2, 3]))
    evaluate("sst2", "runs/sst2/seed-1/best", "glue/SST-2", splits=["dev"])

A task is a dataclass: its fields are its *options* (given as ``--task-arg KEY=VALUE`` on the command
line, e.g. ``text_a=sentence``), coerced from strings by ``get_task``. What a task supplies:

``name``, ``main_metric``, ``defaults``
    class attributes: registry name, the metric that picks the best checkpoint (higher is better),
    and the default hyper-parameters (``TaskDefaults``; ``configs/finetune/<name>.yaml`` mirrors them).
``read(data_dir, split) -> list | None``
    the examples of ``"train"``, ``"dev"`` or ``"test"`` (any objects), ``None`` when the split's file is
    absent. Bad input raises ValueError / FileNotFoundError naming file, line and field.
``build_model(model_dir) -> PreTrainedModel``
    a transformers model from any BERT/PERT folder; its forward returns ``.loss`` when the batch has
    labels. ``load_model_with_head`` does this for any ``BertFor*`` class: a randomly initialised
    head is marked ``model.pert_new_head = True``, and ``evaluate`` refuses such a model.
``encode(examples, tokenizer, max_seq_len) -> list[dict]``
    model features; one example may give several (sliding windows). Each feature is a dict of lists
    of ints / ints, plus ``"example_index"`` (the index of its example in ``examples``).
``collate(features, tokenizer) -> dict[str, Tensor]``
    a padded batch of model inputs (default ``pad_features``: ids padded with the pad id, ``labels``
    with -100, other lists with 0; keys in ``non_model_keys`` dropped).
``loss(model, batch) -> Tensor`` / ``infer(model, batch) -> dict[str, ndarray]``
    one training loss, and the raw outputs of one evaluation batch (defaults: ``model(**batch).loss``
    and ``{"logits": ...}``); rows of each array follow the batch's features.
``postprocess(examples, features, outputs) -> list``
    one prediction per example from the outputs of all features (``outputs[key]`` is the list of
    per-feature arrays, in feature order, each possibly longer than its feature by the right padding
    of the batch it ran in; windows are merged here).
``compute_metrics(examples, predictions) -> dict[str, float]``
    the official metrics in percent (0-100, as papers report them); must contain ``main_metric``.
``has_labels(examples) -> bool``
    whether the split can be scored (unlabelled test sets are only predicted).
``save_predictions(examples, predictions, path)``
    optional; the default writes one JSON line per example.

Register a task with the ``@register_task`` decorator; ``get_task(name, options)`` builds one and
``task_names()`` lists them. Built-in task modules are imported on first lookup (``BUILTIN_MODULES``).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import typing
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

# Modules whose import registers tasks; a module that does not exist (yet) is skipped.
BUILTIN_MODULES = ("pert.tasks.classification", "pert.tasks.ner", "pert.tasks.mrc", "pert.tasks.wor")
IGNORE_INDEX = -100


@dataclass(frozen=True)
class TaskDefaults:
    """Default hyper-parameters of a task (HFL's published values where they exist)."""

    lr: float = 2e-5
    epochs: float = 3.0
    batch_size: int = 32
    max_seq_len: int = 128


class Task(ABC):
    """Base class of a fine-tuning task; subclasses are dataclasses whose fields are their options."""

    name: ClassVar[str] = ""
    main_metric: ClassVar[str] = "accuracy"
    defaults: ClassVar[TaskDefaults] = TaskDefaults()
    description: ClassVar[str] = ""
    # Feature keys that are bookkeeping, not model inputs.
    non_model_keys: ClassVar[tuple[str, ...]] = ("example_index",)

    @abstractmethod
    def read(self, data_dir: Path, split: str) -> list[Any] | None:
        ...

    @abstractmethod
    def build_model(self, model_dir: Path) -> PreTrainedModel:
        ...

    @abstractmethod
    def encode(self, examples: Sequence[Any], tokenizer: PreTrainedTokenizerBase,
               max_seq_len: int) -> list[dict[str, Any]]:
        ...

    def collate(self, features: Sequence[dict[str, Any]],
                tokenizer: PreTrainedTokenizerBase) -> dict[str, torch.Tensor]:
        return pad_features(features, tokenizer.pad_token_id, drop=self.non_model_keys)

    def loss(self, model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**batch).loss

    def infer(self, model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        return {"logits": model(**inputs).logits.float().cpu().numpy()}

    @abstractmethod
    def postprocess(self, examples: Sequence[Any], features: Sequence[dict[str, Any]],
                    outputs: dict[str, list[np.ndarray]]) -> list[Any]:
        ...

    @abstractmethod
    def compute_metrics(self, examples: Sequence[Any], predictions: Sequence[Any]) -> dict[str, float]:
        ...

    def has_labels(self, examples: Sequence[Any]) -> bool:
        return True

    def save_predictions(self, examples: Sequence[Any], predictions: Sequence[Any], path: Path) -> None:
        with open(path, "w", encoding="utf-8") as f:
            for i, p in enumerate(predictions):
                f.write(json.dumps({"index": i, "prediction": _jsonable(p)}, ensure_ascii=False) + "\n")

    def options(self) -> dict[str, Any]:
        """The task's options (its dataclass fields), for run records."""
        return dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    return x


def pad_features(features: Sequence[dict[str, Any]], pad_id: int,
                 drop: Sequence[str] = ("example_index",)) -> dict[str, torch.Tensor]:
    """Stack features into tensors, right-padding list values to the longest in the batch."""
    batch: dict[str, torch.Tensor] = {}
    for key in features[0]:
        if key in drop:
            continue
        values = [f[key] for f in features]
        if isinstance(values[0], list | tuple):
            fill = pad_id if key == "input_ids" else IGNORE_INDEX if key == "labels" else 0
            width = max(len(v) for v in values)
            values = [list(v) + [fill] * (width - len(v)) for v in values]
        batch[key] = torch.tensor(values)
    return batch


def load_model_with_head(model_cls: type[PreTrainedModel], model_dir: str | Path,
                         labels: Sequence[str] | None = None) -> PreTrainedModel:
    """``model_cls`` (e.g. BertForTokenClassification) from any BERT/PERT folder.

    Heads absent from the folder (a pre-trained PERT folder's ``perlm_head.*`` are simply ignored) or
    fine-tuned for other labels start random, which is logged and marked ``model.pert_new_head``.
    A folder lacking encoder weights is an error.
    """
    import transformers

    from pert.convert.folder import load_config
    from pert.convert.weights import check_model_folder

    config = load_config(model_dir)
    check_model_folder(model_dir, config)  # unsafe pickles, truncated files, shapes that do not fit: clear errors
    relabelled = False
    if labels is not None:
        labels = [str(x) for x in labels]
        named = {int(k): str(v) for k, v in (config.id2label or {}).items()}
        old = [named[i] for i in sorted(named)]
        trained = model_cls.__name__ in (config.architectures or [])
        relabelled = trained and old != labels
        config.num_labels = len(labels)
        config.id2label = dict(enumerate(labels))
        config.label2id = {name: i for i, name in enumerate(labels)}
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # we log what matters ourselves, in one line
    try:
        model, info = model_cls.from_pretrained(str(model_dir), config=config, output_loading_info=True,
                                                ignore_mismatched_sizes=True)
    finally:
        transformers.logging.set_verbosity(verbosity)
    missing = set(info["missing_keys"]) | {k[0] if isinstance(k, tuple) else k for k in info["mismatched_keys"]}
    prefix = model.base_model_prefix + "."
    encoder = sorted(k for k in missing if k.startswith(prefix) and ".pooler." not in k)
    if encoder:
        raise ValueError(f"{model_dir}: encoder weights missing from the checkpoint: {', '.join(encoder[:5])}"
                         + (" ..." if len(encoder) > 5 else ""))
    head = sorted(k for k in missing if k not in encoder)
    if relabelled:
        log.warning("%s: its head was trained for labels %s; starting a new head for %s", model_dir, old, labels)
        std = getattr(config, "initializer_range", 0.02)
        with torch.no_grad():  # BERT's initialisation, done by hand: transformers skips loaded weights
            for name, module in model.named_children():
                if name == model.base_model_prefix:
                    continue
                for sub in module.modules():
                    if isinstance(sub, torch.nn.Linear):
                        sub.weight.normal_(0.0, std)
                        if sub.bias is not None:
                            sub.bias.zero_()
        head = head or ["(relabelled head)"]
    if head:
        log.info("%s: new %s head, randomly initialised (%s)", model_dir, model_cls.__name__, ", ".join(head))
    model.pert_new_head = bool(head)
    return model


_REGISTRY: dict[str, type[Task]] = {}
_loaded = False


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make a Task subclass available under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__}: a task needs a non-empty `name`")
    other = _REGISTRY.get(cls.name)
    if other is not None and other is not cls and other.__qualname__ != cls.__qualname__:
        raise ValueError(f"task name {cls.name!r} registered twice ({other.__qualname__}, {cls.__qualname__})")
    _REGISTRY[cls.name] = cls
    return cls


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in BUILTIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise


def task_names() -> list[str]:
    """Names of all registered tasks, sorted."""
    _load_builtins()
    return sorted(_REGISTRY)


def get_task(name: str, options: dict[str, Any] | Sequence[str] | None = None) -> Task:
    """Build the task ``name`` with options (a dict, or ``KEY=VALUE`` strings as given on the CLI)."""
    _load_builtins()
    if name not in _REGISTRY:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(_REGISTRY))}")
    cls = _REGISTRY[name]
    opts = parse_options(options)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init} if dataclasses.is_dataclass(cls) else {}
    unknown = sorted(set(opts) - set(fields))
    if unknown:
        known = ", ".join(sorted(fields)) or "none"
        raise ValueError(f"task {name}: unknown option(s) {', '.join(unknown)}; its options: {known}")
    hints = typing.get_type_hints(cls) if fields else {}
    values = {k: _coerce_option(name, k, v, hints[k]) for k, v in opts.items()}
    try:
        return cls(**values)
    except TypeError as e:
        raise ValueError(f"task {name}: {e}") from e


def parse_options(options: dict[str, Any] | Sequence[str] | None) -> dict[str, Any]:
    """``["a=1", "b=x"]`` or a dict -> dict (values stay strings until coerced)."""
    if options is None:
        return {}
    if isinstance(options, dict):
        return dict(options)
    out: dict[str, Any] = {}
    for item in options:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--task-arg {item!r}: expected KEY=VALUE")
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def _coerce_option(task: str, key: str, value: Any, tp: Any) -> Any:
    if not isinstance(value, str):
        return value
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if value.lower() in ("none", "") and type(None) in typing.get_args(tp):
        return None
    base = args[0] if args else tp
    origin = typing.get_origin(base)
    try:
        if base is bool:
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return value.lower() in ("true", "1", "yes")
        if origin in (list, tuple):
            elem = typing.get_args(base)[0]
            return [elem(v) for v in value.split(",") if v]
        if base in (int, float, str):
            return base(value)
        return value
    except ValueError as e:
        raise ValueError(f"task {task}: option {key}={value!r} is not a valid {getattr(base, '__name__', base)}") from e
