"""Export a fine-tuned QA or word-order-restoration folder to ONNX, optionally int8: ``pert export onnx``.

    pert export onnx runs/squad/seed-1/best --quantize int8 --check dev.json   # -> runs/squad/seed-1/best-onnx-int8
    pert qa --model runs/squad/seed-1/best --context "..." --question "..."    # runs the checked int8 export

The graph comes from torch's TorchScript exporter (``torch.onnx.export(dynamo=False)``, the model's attention
written out as matmuls and a softmax) with dynamic batch and sequence axes, then onnxruntime's BERT optimiser
fuses it: one ``Attention`` node per layer, ``SkipLayerNormalization``, ``EmbedLayerNormalization`` and
``BiasGelu`` (counted in ``pert_onnx.json``; the dynamo exporter's graph matched none of its patterns).
Optimum was not used: its ONNX exporter
(``optimum-onnx`` 0.1) requires transformers < 4.58, and pert runs on transformers 5. ``--quantize int8`` is
onnxruntime's dynamic quantisation (``quantize_dynamic``: int8 weights, activations quantised per batch at run
time), which needs no calibration data. ``--quantize int8 --calibrate FILE`` is static int8 instead, calibrated on
FILE's inputs and run by OpenVINO (``pert.convert.openvino``; the folder holds ``model.xml``/``model.bin``, and the
fused ONNX graph is only its fp32 check): the faster of the two and the one ``--runtime auto`` prefers
(benchmarks/README.md). onnxruntime's own static quantisation was measured and lost, so it is not offered.

The output folder holds ``model.onnx``, the tokenizer, ``config.json``, the source's
``pert_training.json`` (QA window settings) and ``pert_onnx.json``: what was exported, from where, with
which versions, from which weights (sha256), the largest difference from the torch model measured on a
sample batch and, with ``--check FILE``, how many of the file's answers equal the torch model's. The fp32
export must match torch within ``FP32_TOLERANCE`` or nothing is written. ``--runtime auto`` (the default
of `pert qa`, `pert restore` and `pert serve`) runs the export beside a folder when it is current and checked
(``pert.runtime.checked_export``).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pert.runtime import RECORD

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
TASKS = {"qa": (("input_ids", "attention_mask", "token_type_ids"), ("start_logits", "end_logits")),
         "wor": (("input_ids", "attention_mask"), ("position_logits",))}
QA_TASKS = ("cmrc2018", "drcd", "squad1", "squad2")
FP32_TOLERANCE = 1e-3  # largest |onnx - torch| logit allowed for an fp32 export (float32 noise is ~1e-5)
OPSET = 17
CHECK_ITEMS = 200  # questions or sentences answered by both runtimes with --check
FUSED_OPS = ("Attention", "MultiHeadAttention", "SkipLayerNormalization", "EmbedLayerNormalization", "BiasGelu",
             "FastGelu", "LayerNormalization", "MatMul")


class _QaGraph(torch.nn.Module):
    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return out.start_logits, out.end_logits


class _WorGraph(torch.nn.Module):
    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.position_logits(input_ids, attention_mask)


def detect_task(model_dir: Path) -> str:
    """``qa`` or ``wor`` from the folder's training record, else from the heads its weights hold."""
    from pert.convert.info import model_info

    training = model_info(model_dir)
    task = (training.training or {}).get("task")
    if task in QA_TASKS:
        return "qa"
    if task == "wor":
        return "wor"
    heads = training.heads
    if "QA" in heads and "PerLM" not in heads:
        return "qa"
    if "PerLM" in heads and "QA" not in heads:
        return "wor"
    raise ValueError(f"{model_dir}: cannot tell what to export (heads: {', '.join(heads) or 'none'}); "
                     "give --task qa (a BertForQuestionAnswering head) or --task wor (the PerLM pointer head)")


def _load(opened: Any, task: str) -> torch.nn.Module:
    """The graph to export, from an opened model (``pert.models.open_model``)."""
    from pert.convert.info import model_info

    model_dir = opened.path
    heads = model_info(model_dir).heads
    if task == "qa":
        if "QA" not in heads:
            raise ValueError(f"{model_dir}: no trained question-answering head (qa_outputs) to export")
        from transformers import BertForQuestionAnswering

        model = opened.with_head(BertForQuestionAnswering)
        if model.pert_new_head:
            raise ValueError(f"{model_dir}: no trained question-answering head (qa_outputs) to export")
        return _QaGraph(_eager(model)).eval()
    if "PerLM" not in heads:
        raise ValueError(f"{model_dir}: no PerLM head (perlm_head.*) to export for word-order restoration")
    return _WorGraph(_eager(opened.pretraining_model("perlm"))).eval()


def _eager(model: torch.nn.Module) -> torch.nn.Module:
    """Attention written out (matmul, softmax): the pattern onnxruntime's optimiser fuses into one node; SDPA
    traces to a graph it leaves unfused."""
    model.set_attn_implementation("eager")
    return model


def sample_inputs(tokenizer: Any, task: str, batch: int = 2, length: int = 24) -> dict[str, np.ndarray]:
    """A padded batch of real text (the last row shorter) in the graph's input layout (int64)."""
    words = "the model reads this sample sentence 这是一个用来检查导出的句子".split() * length
    rows = [" ".join(words[: max(length - 4 * i, 2)]) for i in range(batch)]
    if task == "qa":
        enc = tokenizer(["what does it read?"] * batch, rows, truncation="only_second", max_length=length,
                        padding="longest", return_tensors="np")
    else:
        enc = tokenizer(rows, truncation=True, max_length=length, padding="longest", return_tensors="np")
    return {k: enc[k].astype(np.int64) for k in TASKS[task][0]}


def _torch_outputs(graph: torch.nn.Module, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    with torch.inference_mode():
        out = graph(**{k: torch.from_numpy(v) for k, v in feeds.items()})
    return [t.float().numpy() for t in (out if isinstance(out, tuple) else (out,))]


def max_difference(a: list[np.ndarray], b: list[np.ndarray], mask: np.ndarray) -> float:
    """Largest |a - b| over the real (unpadded) positions; -inf entries (masked pointers) must agree."""
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        keep = mask.astype(bool)
        while keep.ndim < x.ndim:  # pointer logits (B, L, L): real queries and real targets
            keep = keep[..., None] & mask.astype(bool)[:, None, :]
        fx, fy = np.where(keep, x, 0.0), np.where(keep, y, 0.0)
        if not np.array_equal(np.isfinite(fx), np.isfinite(fy)):
            return float("inf")
        finite = np.isfinite(fx)
        worst = max(worst, float(np.abs(fx[finite] - fy[finite]).max(initial=0.0)))
    return worst


def check_answers(model_dir: Path, export_dir: Path, task: str, data: str | Path) -> dict[str, Any]:
    """Answers of the torch model (fp32) and of the export to the first ``CHECK_ITEMS`` questions (a
    SQuAD-format file) or sentences (.txt or .jsonl) of ``data``, through `pert qa` / `pert restore`."""
    if task == "qa":
        from pert.qa import QuestionAnswerer
        from pert.tasks.mrc_data import read_mrc_file

        examples = read_mrc_file(data)[0][:CHECK_ITEMS]

        def answer(folder: Path, **how: str) -> list[str]:
            return [p.text for p in QuestionAnswerer(folder, **how).predict(examples)]
    else:
        from pert.wor.restore import Restorer, read_sentences

        examples = read_sentences(Path(data))[0][:CHECK_ITEMS]

        def answer(folder: Path, **how: str) -> list[str]:
            return [r.text for r in Restorer(folder, **how).restore(examples)]
    if not examples:
        what = "questions" if task == "qa" else "sentences"
        raise ValueError(f"{data}: nothing to check the export on (no {what})")
    expected, got = answer(model_dir, precision="fp32", runtime="torch"), answer(export_dir, runtime="onnx")
    identical = sum(a == b for a, b in zip(expected, got, strict=True))
    return {"data": Path(data).name, "items": len(examples), "identical": identical,
            "share": identical / len(examples)}


def export_onnx(model_dir: str | Path, out: str | Path, task: str | None = None,
                quantize: str | None = None, check: str | Path | None = None,
                calibrate: str | Path | None = None) -> dict[str, Any]:
    """Export ``model_dir`` to the folder ``out`` (which must not exist or be empty; `pert export onnx` defaults it
    to ``pert.runtime.export_beside``); returns the record. ``check``: a task file whose answers the export and
    the torch model give, compared in the record (what lets ``--runtime auto`` choose an int8 export).
    ``calibrate`` (with ``quantize="int8"``): a task file whose inputs calibrate static int8 on OpenVINO
    (``pert.convert.openvino``) instead of onnxruntime's dynamic int8."""
    try:
        import onnxruntime
        from onnxruntime.transformers import optimizer
    except ImportError as e:
        raise ValueError(f"pert export onnx needs {e.name}: pip install 'pert[onnx]'") from e

    from pert.models import open_model
    from pert.runtime import onnx_session, weights_fingerprint

    model_dir, out = Path(model_dir), Path(out)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"{model_dir}: no such model folder")
    for given, what in ((check, "check the export on"), (calibrate, "calibrate int8 on")):
        if given is not None and not Path(given).is_file():
            raise FileNotFoundError(f"{given}: no such file to {what}")
    if calibrate is not None and quantize != "int8":
        raise ValueError("--calibrate calibrates int8: give it with --quantize int8")
    if calibrate is not None and importlib.util.find_spec("nncf") is None:
        raise ValueError("--calibrate needs openvino and nncf: pip install 'pert[openvino]'")
    opened = open_model(model_dir, device="cpu", precision="fp32", runtime="torch")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out}: already exists and is not empty; remove it or choose another --out")
    if quantize not in (None, "int8"):
        raise ValueError(f"quantize must be int8 or none, got {quantize!r}")
    task = task or detect_task(model_dir)
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    inputs, outputs = TASKS[task]
    tokenizer = opened.tokenizer
    graph = _load(opened, task)
    config = graph.model.config
    max_len = int(config.max_position_embeddings)
    trace = sample_inputs(tokenizer, task, batch=2, length=16)
    probe = sample_inputs(tokenizer, task, batch=3, length=min(40, max_len))  # other shapes than the trace

    tmp = out.with_name(out.name + ".tmp-export")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        traced = tmp / "model.traced.onnx"
        with warnings.catch_warnings():  # the TorchScript exporter's deprecation and tracer notes
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, tuple(torch.from_numpy(trace[k]) for k in inputs), str(traced), dynamo=False,
                              input_names=list(inputs), output_names=list(outputs), opset_version=OPSET,
                              dynamic_axes={k: {0: "batch", 1: "sequence"} for k in (*inputs, *outputs)})
        # onnxruntime's BERT optimiser fuses what the traced graph spells out op by op
        fused_model = optimizer.optimize_model(str(traced), model_type="bert",
                                               num_heads=int(config.num_attention_heads),
                                               hidden_size=int(config.hidden_size))
        fused_model.save_model_to_file(str(tmp / MODEL_FILE))
        traced.unlink()
        fused = fused_nodes(tmp / MODEL_FILE)
        expected = _torch_outputs(graph, probe)
        fp32_diff = max_difference(expected, onnx_session(tmp / MODEL_FILE).run(None, probe),
                                   probe["attention_mask"])
        if not fp32_diff <= FP32_TOLERANCE:
            raise ValueError(f"{model_dir}: the exported graph differs from the torch model by {fp32_diff:.3g} "
                             f"(more than {FP32_TOLERANCE}); nothing written")
        record: dict[str, Any] = {
            "format": "pert-onnx", "version": 1, "task": task, "model_file": MODEL_FILE,
            "precision": "int8" if quantize else "fp32", "inputs": list(inputs), "outputs": list(outputs),
            "source": str(model_dir), "source_weights_sha256": weights_fingerprint(model_dir),
            "exporter": "torch.onnx.export(dynamo=False), eager attention; onnxruntime.transformers optimizer (bert)",
            "fused_nodes": fused, "opset": _opset(tmp / MODEL_FILE), "max_abs_diff_fp32": fp32_diff,
            "versions": {"torch": torch.__version__, "onnx": version("onnx"),
                         "onnxruntime": onnxruntime.__version__, "transformers": version("transformers")},
        }
        if quantize and calibrate is not None:
            from pert.convert.openvino import IR_FILE, calibration_inputs, quantize_static
            from pert.runtime import ExportedModel

            windows = calibration_inputs(model_dir, task, calibrate)
            graph.model.set_attn_implementation("sdpa")  # OpenVINO's own attention operator, not matmuls
            quantize_static(graph, windows, tmp / IR_FILE)
            (tmp / MODEL_FILE).unlink()  # the fused fp32 graph was the check of the export; FOLDER-onnx holds it
            record.update(
                engine="openvino", model_file=IR_FILE,
                exporter="openvino.convert_model of the torch module (SDPA attention); the fused ONNX graph "
                         "(fused_nodes, max_abs_diff_fp32) was its fp32 check",
                versions=record["versions"] | {"openvino": version("openvino"), "nncf": version("nncf")},
                quantization=f"nncf.quantize (OpenVINO, transformer mode: SmoothQuant, int8 weights per channel, "
                             f"int8 activations calibrated on {len(windows)} inputs of {Path(calibrate).name})")
            (tmp / RECORD).write_text(json.dumps(record), encoding="utf-8")  # read back by ExportedModel
            record["max_abs_diff_int8"] = max_difference(expected, ExportedModel(tmp, task).run(probe),
                                                         probe["attention_mask"])
        elif quantize:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            fp32 = tmp / "model.fp32.onnx"
            os.replace(tmp / MODEL_FILE, fp32)
            for data in tmp.glob(MODEL_FILE + ".data"):  # external weights of a > 2 GB model
                os.replace(data, tmp / "model.fp32.onnx.data")
            # per output channel: half the logit error of one scale per tensor, and no slower (benchmarks/README.md)
            # the fused operators are outside ONNX's shape inference: their outputs are float32
            quantize_dynamic(fp32, tmp / MODEL_FILE, weight_type=QuantType.QInt8, per_channel=True,
                             extra_options={"DefaultTensorType": 1})  # onnx.TensorProto.FLOAT
            for f in tmp.glob("model.fp32.onnx*"):
                f.unlink()
            record["quantization"] = ("onnxruntime.quantization.quantize_dynamic of the fused graph, QInt8 weights, "
                                      "per channel")
            record["fused_nodes_int8"] = fused_nodes(tmp / MODEL_FILE) | {
                "QAttention": _count(tmp / MODEL_FILE, "QAttention")}
            record["max_abs_diff_int8"] = max_difference(
                expected, onnx_session(tmp / MODEL_FILE).run(None, probe), probe["attention_mask"])
        from pert.text.tokenizer import save_tokenizer

        save_tokenizer(tokenizer, tmp, model_max_length=max_len)
        graph.model.config.save_pretrained(tmp)
        for name in ("pert_training.json",):
            if (model_dir / name).is_file():
                shutil.copyfile(model_dir / name, tmp / name)
        (tmp / RECORD).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        if check is not None:
            record["answer_check"] = check_answers(model_dir, tmp, task, check)
            (tmp / RECORD).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return record


def fused_nodes(path: Path) -> dict[str, int]:
    """How many of onnxruntime's fused BERT operators a graph holds (and the MatMuls left outside them)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    counts: dict[str, int] = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return {k: counts.get(k, 0) for k in FUSED_OPS}


def _count(path: Path, op: str) -> int:
    import onnx

    return sum(n.op_type == op for n in onnx.load(str(path), load_external_data=False).graph.node)


def _opset(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
