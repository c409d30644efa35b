"""Downstream fine-tuning tasks sharing one loop; see ``pert.tasks.base`` for the Task interface."""

from pert.tasks.base import Task, TaskDefaults, get_task, pad_features, register_task, task_names
from pert.tasks.config import EvaluateConfig, FinetuneConfig
from pert.tasks.loop import evaluate, finetune, predict, score

__all__ = ["EvaluateConfig", "FinetuneConfig", "Task", "TaskDefaults", "evaluate", "finetune", "get_task",
           "pad_features", "predict", "register_task", "score", "task_names"]
