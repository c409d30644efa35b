"""Downstream fine-tuning tasks sharing one loop; see ``pert.tasks.base`` for the Task interface.

The names below are imported on first use, so that ``pert.tasks.config`` (which the CLI reads to build its
parser) can be imported without torch.
"""

import importlib
from typing import Any

_WHERE = {"Task": "base", "TaskDefaults": "base", "get_task": "base", "pad_features": "base",
          "register_task": "base", "task_names": "base", "EvaluateConfig": "config", "FinetuneConfig": "config",
          "evaluate": "loop", "finetune": "loop", "predict": "loop", "score": "loop"}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
