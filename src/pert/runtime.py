"""Where a loaded model runs: ``torch`` (a Hugging Face folder) or ``onnx`` (onnxruntime on a folder
written by ``pert export onnx``). ``pert qa``, ``pert restore`` and ``pert serve`` choose through here.

onnxruntime runs on the CPU with ``intra_op_num_threads`` = torch's thread count (the physical cores, or
``OMP_NUM_THREADS``), one inter-op thread, sequential execution and all graph optimisations.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

RUNTIMES = ("torch", "onnx")
RECORD = "pert_onnx.json"


def is_onnx_export(model_dir: str | Path) -> bool:
    return (Path(model_dir) / RECORD).is_file()


def resolve_runtime(model_dir: str | Path, runtime: str | None) -> str:
    """``runtime``, or when None the one the folder needs (onnx for an export, else torch); a folder that
    does not fit the runtime asked for is an error naming what to do."""
    if runtime not in (None, *RUNTIMES):
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    exported = is_onnx_export(model_dir)
    if runtime is None:
        return "onnx" if exported else "torch"
    if runtime == "onnx" and not exported:
        if not Path(model_dir).is_dir():
            raise FileNotFoundError(f"{model_dir}: no such model folder")
        raise ValueError(f"{model_dir}: not an ONNX export (no {RECORD}); make one with "
                         f"`pert export onnx {model_dir} --out DIR` and pass DIR")
    if runtime == "torch" and exported:
        raise ValueError(f"{model_dir}: an ONNX export holds no torch weights; use --runtime onnx, or the "
                         "folder it was exported from")
    return runtime


def read_record(model_dir: str | Path, task: str) -> dict[str, Any]:
    """The export record of ``model_dir``, checked to be a ``task`` export whose model file exists."""
    path = Path(model_dir) / RECORD
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: unreadable export record ({e})") from e
    if not isinstance(record, dict) or record.get("format") != "pert-onnx":
        raise ValueError(f"{path}: not a pert ONNX export record (expected \"format\": \"pert-onnx\")")
    if record.get("task") != task:
        raise ValueError(f"{path}: exported for task {record.get('task')!r}, not {task!r}")
    model_file = Path(model_dir) / str(record.get("model_file", ""))
    if not model_file.is_file():
        raise FileNotFoundError(f"{model_file}: the ONNX model named in {RECORD} is missing")
    return record


def default_threads() -> int:
    import torch

    return torch.get_num_threads()


def onnx_session(model_file: str | Path, threads: int | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` on the CPU, configured as the module docstring says."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ValueError("the onnx runtime needs onnxruntime: pip install 'pert[onnx]'") from e
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    try:
        return ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for unreadable/invalid graphs
        raise ValueError(f"{model_file}: onnxruntime cannot load it ({str(e).splitlines()[0]})") from e


class OnnxModel:
    """An exported QA or WOR graph: ``run(feeds)`` -> its outputs (float32 arrays) in the record's order."""

    def __init__(self, model_dir: str | Path, task: str, threads: int | None = None):
        self.record = read_record(model_dir, task)
        self.session = onnx_session(Path(model_dir) / self.record["model_file"], threads)
        self.inputs = [i.name for i in self.session.get_inputs()]

    def run(self, feeds: dict[str, Any]) -> list[np.ndarray]:
        """``feeds``: the graph's inputs as torch tensors or arrays (extra keys are ignored)."""
        arrays = {k: np.ascontiguousarray(np.asarray(feeds[k]), dtype=np.int64) for k in self.inputs}
        return self.session.run(None, arrays)
