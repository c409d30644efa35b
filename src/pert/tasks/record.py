"""What a fine-tuned folder remembers of its training (in ``pert_training.json``), and the defaults that
``pert evaluate``, ``pert qa`` and ``pert restore`` take from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pert.tasks.config import FinetuneConfig

# Hyper-parameters of the run, recorded as given after the task's defaults were applied.
_HYPER = ("lr", "epochs", "batch_size", "grad_accum", "warmup_ratio", "weight_decay", "max_grad_norm",
          "max_steps", "max_train_examples", "seeds")


def fine_tuning_record(cfg: FinetuneConfig, task: Any) -> dict[str, Any]:
    """The part of a fine-tuned folder's ``pert_training.json`` shared by its seeds: task and its options
    (columns, labels, doc_stride ...), max_seq_len, precision and the other hyper-parameters, data, base."""
    record: dict[str, Any] = {"task": task.name, "task_options": task.options(), "max_seq_len": cfg.max_seq_len,
                              "base_model": str(cfg.model), "data": Path(str(cfg.data)).name,
                              "hyperparameters": {k: getattr(cfg, k) for k in _HYPER}}
    if cfg.revision:
        record["base_model_revision"] = cfg.revision
    labels = getattr(task, "label_names", None) or getattr(task, "tag_names", None)
    if callable(labels):
        record["labels"] = list(labels())
    record["precision"] = cfg.precision
    return record


def trained_task(training: dict[str, Any], task: str | None, task_args: Any) -> tuple[str, Any]:
    """(task, task options) for scoring a folder: the recorded ones unless given; given options override
    recorded ones of the same task. A folder that records no task needs ``task``."""
    recorded = training.get("task")
    if not task:
        if not recorded:
            raise ValueError("--task is required: the model folder records no fine-tuning task "
                             "(no 'task' in its pert_training.json)")
        task = recorded
    if task != recorded or not isinstance(training.get("task_options"), dict):
        return task, task_args
    from pert.tasks.base import parse_options

    return task, {**training["task_options"], **parse_options(task_args)}


