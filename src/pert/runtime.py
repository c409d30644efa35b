"""Where a loaded model runs: ``torch`` (a Hugging Face folder) or ``onnx`` (a folder written by ``pert export
onnx``: onnxruntime on its ONNX graph, or OpenVINO on the IR of a calibrated int8 export; its record's
``engine`` says which). ``pert qa``, ``pert restore`` and ``pert serve`` choose through here; their default,
``auto``, runs a checked int8 export that sits beside the model folder on the CPU (``checked_export``).

Both engines run on the CPU with torch's thread count (the physical cores, or ``OMP_NUM_THREADS``): onnxruntime
with one inter-op thread, sequential execution and all graph optimisations; OpenVINO with one stream and its
latency hint.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "torch", "onnx")
RECORD = "pert_onnx.json"
LENGTH_SPREAD = 1.25  # a batch's longest input is at most this many times its shortest (real tokens)
# Padded tokens per model call on a CPU: onnxruntime is fastest with small calls (its activations stay in cache),
# torch with medium ones (measured on MiniLM-L6 readers, 2 threads: benchmarks/README.md, "Batch size")
CPU_BATCH_TOKENS = {"onnx": 512, "torch": 2048}


def length_batches(lengths: Sequence[int], max_items: int, spread: float = LENGTH_SPREAD,
                   max_tokens: int | None = None) -> list[list[int]]:
    """Indices of ``lengths`` in batches of similar length, shortest first: a batch ends at ``max_items``, before
    an input longer than ``spread`` times the batch's shortest, or (``max_tokens``) before its padded size
    (items x longest) would pass ``max_tokens``. Each batch is padded only to its longest, so mixed requests
    (a short question beside a 384-token window) waste no compute on padding."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    for i in order:
        last = batches[-1] if batches else None
        if (last and len(last) < max_items and lengths[i] <= spread * max(1, lengths[last[0]])
                and (max_tokens is None or (len(last) + 1) * lengths[i] <= max_tokens)):
            last.append(i)
        else:
            batches.append([i])
    return batches


def batch_tokens(runtime: str, device: Any) -> int | None:
    """The padded-token budget of one model call: ``CPU_BATCH_TOKENS`` on a CPU, none on an accelerator."""
    return CPU_BATCH_TOKENS[runtime] if str(device) == "cpu" else None


CHECK_SHARE = 0.9  # an int8 export runs by itself only where this share of its checked answers equal torch's


def is_onnx_export(model_dir: str | Path) -> bool:
    return (Path(model_dir) / RECORD).is_file()


def export_beside(model_dir: str | Path, quantize: str | None = None, calibrated: bool = False) -> Path:
    """Where ``pert export onnx`` writes by default and ``--runtime auto`` looks, next to the model folder:
    ``<folder>-onnx``, ``<folder>-onnx-int8`` (dynamic, onnxruntime) and ``<folder>-openvino-int8``
    (``--calibrate``: static, OpenVINO)."""
    model_dir = Path(model_dir)
    suffix = "-openvino-int8" if quantize and calibrated else "-onnx-int8" if quantize else "-onnx"
    return model_dir.with_name(model_dir.name + suffix)


def weights_fingerprint(model_dir: str | Path) -> str:
    """sha256 of the folder's weight files: an export names the weights it was made from, so a model
    fine-tuned again into the same folder does not run on a stale export."""
    from pert.convert.weights import weight_files

    digest = hashlib.sha256()
    for file in weight_files(model_dir):
        with open(file, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def checked_export(model_dir: str | Path, task: str) -> tuple[Path, str] | None:
    """The fastest int8 export beside ``model_dir`` that was made from the folder's current weights and whose
    answers ``pert export onnx --check`` found equal to torch's for at least ``CHECK_SHARE`` of them, with that
    finding; else None. Fastest first: ``FOLDER-openvino-int8`` (static, where openvino is installed), then
    ``FOLDER-onnx-int8`` (benchmarks/README.md). Only int8: the fp32 export runs at torch fp32's speed, so it runs
    where it is asked for (``--model FOLDER-onnx`` or ``--runtime onnx``), not by itself."""
    current = functools.cache(lambda: weights_fingerprint(model_dir))  # hashed once, only if an export exists
    for folder in (export_beside(model_dir, "int8", calibrated=True), export_beside(model_dir, "int8")):
        found = _checked(model_dir, folder, task, current)
        if found is not None:
            return found
    return None


def _checked(model_dir: str | Path, folder: Path, task: str,
             current: Callable[[], str]) -> tuple[Path, str] | None:
    try:
        record = read_record(folder, task)
    except (OSError, ValueError):
        return None
    if record.get("source_weights_sha256") != current():
        log.info("%s: exported from other weights than %s's; not used", folder, Path(model_dir).name)
        return None
    check = record.get("answer_check") or {}
    if not check.get("share", 0.0) >= CHECK_SHARE:
        found = f"{check['identical']} of {check['items']} answers equal torch's" if check else "answers not checked"
        log.info("%s: %s (at least %.0f%% wanted: `pert export onnx --check FILE`); not used", folder, found,
                 100 * CHECK_SHARE)
        return None
    if record.get("engine") == "openvino" and importlib.util.find_spec("openvino") is None:
        log.info("%s: an OpenVINO export, and openvino is not installed (pip install 'pert[openvino]'); not used",
                 folder)
        return None
    return folder, f"{check['identical']} of {check['items']} answers equal torch's at export"


def resolve_runtime(model_dir: str | Path, runtime: str | None) -> str:
    """``runtime`` (torch or onnx) checked against the folder, or for ``auto``/None the one the folder
    needs (onnx for an export, else torch; ``pert.models.open_model`` looks for a checked export beside a
    torch folder); a folder that does not fit the runtime asked for is an error naming what to do."""
    if runtime not in (None, *RUNTIMES):
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    exported = is_onnx_export(model_dir)
    if runtime in (None, "auto"):
        return "onnx" if exported else "torch"
    if runtime == "onnx" and not exported:
        if not Path(model_dir).is_dir():
            raise FileNotFoundError(f"{model_dir}: no such model folder")
        raise ValueError(f"{model_dir}: not an ONNX export (no {RECORD}); make one with "
                         f"`pert export onnx {model_dir}` and pass {export_beside(model_dir).name}")
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


def compile_ir(model_file: str | Path, threads: int) -> Any:
    """An OpenVINO ``CompiledModel`` on the CPU: ``threads`` inference threads, one stream, latency hint."""
    try:
        import openvino as ov
    except ImportError as e:
        raise ValueError(f"{model_file}: an OpenVINO export needs openvino: pip install 'pert[openvino]'") from e
    try:
        return ov.Core().compile_model(str(model_file), "CPU", {
            "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"})
    except Exception as e:  # OpenVINO raises RuntimeError subclasses of its own for unreadable IR
        raise ValueError(f"{model_file}: OpenVINO cannot load it ({str(e).splitlines()[0]})") from e


ENGINES = ("onnxruntime", "openvino")
# OpenVINO prepares kernels for each input shape it meets, and a new shape costs about two thirds of a call more
# (measured on the CMRC reader: 51 against 31 ms at ~440 tokens): lengths are padded to a multiple of this, so a
# mix of requests meets a few dozen shapes, not hundreds
OPENVINO_LENGTH_STEP = 32


def engine_of(record: dict[str, Any]) -> str:
    """What runs an export: its record's ``engine`` (records older than OpenVINO exports name none)."""
    return str(record.get("engine", "onnxruntime"))


class ExportedModel:
    """An exported QA or WOR graph on its engine: ``run(feeds)`` -> its outputs (float32 arrays) in the record's
    order. Safe to call from several threads (OpenVINO's one infer request is taken in turn)."""

    def __init__(self, model_dir: str | Path, task: str, threads: int | None = None):
        self.record = read_record(model_dir, task)
        self.engine = engine_of(self.record)
        model_file = Path(model_dir) / self.record["model_file"]
        if self.engine == "openvino":
            compiled = compile_ir(model_file, threads or default_threads())
            self.inputs = [i.get_any_name() for i in compiled.inputs]
            self._request, self._lock, self._outputs = compiled.create_infer_request(), threading.Lock(), \
                list(compiled.outputs)
        elif self.engine == "onnxruntime":
            self.session = onnx_session(model_file, threads)
            self.inputs = [i.name for i in self.session.get_inputs()]
        else:
            raise ValueError(f"{Path(model_dir) / RECORD}: engine must be one of {', '.join(ENGINES)}, "
                             f"got {self.engine!r}")

    def run(self, feeds: dict[str, Any]) -> list[np.ndarray]:
        """``feeds``: the graph's inputs as torch tensors or arrays (extra keys are ignored)."""
        arrays = {k: np.ascontiguousarray(np.asarray(feeds[k]), dtype=np.int64) for k in self.inputs}
        if self.engine == "onnxruntime":
            return self.session.run(None, arrays)
        length = arrays[self.inputs[0]].shape[1]
        padded = -(-length // OPENVINO_LENGTH_STEP) * OPENVINO_LENGTH_STEP
        if padded != length:  # masked padding: the real positions' outputs change only by rounding
            arrays = {k: np.pad(v, ((0, 0), (0, padded - length))) for k, v in arrays.items()}
        with self._lock:
            result = self._request.infer(arrays)
            outputs = [np.array(result[o], dtype=np.float32) for o in self._outputs]
        return [x[(slice(None),) + (slice(0, length),) * (x.ndim - 1)] for x in outputs]
