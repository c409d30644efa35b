"""Opening a model: the one way every verb that loads a model gets from what the user gave to what runs.

    opened = open_model("hfl/chinese-pert-base", device="auto", precision="auto")
    opened.path, opened.tokenizer, opened.config, opened.training, opened.device, opened.precision, opened.runtime
    model = opened.with_head(BertForQuestionAnswering)      # or opened.pretraining_model(), opened.onnx("qa")

What a user gives: a local folder, a Hub id (+ revision, resolved from the cache by ``pert.hub``) or a folder
written by ``pert export onnx``; wishes for device, precision and runtime; and, for a verb that needs one, the
task the folder must have been fine-tuned for. The safety checks live here once: config.json read field by
field (``pert.convert.folder``), weights only from safetensors or ``torch.load(weights_only=True)`` and shaped as
the config says (``pert.convert.weights``), a tokenizer that fits the embeddings, a folder fine-tuned for the
task asked of it. Models are built only when asked for, for the head asked for.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class OpenedModel:
    """A model folder with everything resolved; build the model with one of the methods."""

    path: Path
    tokenizer: Any  # a transformers PreTrainedTokenizerBase
    config: Any  # a transformers BertConfig
    training: dict[str, Any]  # pert_training.json: how pert trained it ({} if not pert's)
    device: torch.device
    precision: str  # fp32 | bf16 | fp16
    runtime: str  # torch | onnx

    def pretraining_model(self, objective: str = "perlm") -> Any:
        """``PertForPreTraining`` (absent heads start random, and the log says so), on the device, in eval mode."""
        from pert.convert.hf import load_pretraining_model

        return load_pretraining_model(self.path, objective).to(self.device).eval()

    def with_head(self, model_cls: type, labels: Sequence[str] | None = None) -> Any:
        """``model_cls`` (a transformers BERT head class) from the folder; a head it lacks starts random and the
        model is marked ``pert_new_head``. Not moved to the device (fine-tuning hands it to Accelerate)."""
        from pert.tasks.base import load_model_with_head

        return load_model_with_head(model_cls, self.path, labels)

    def onnx(self, kind: str) -> Any:
        """An exported folder on its engine, onnxruntime or OpenVINO (``pert.runtime.ExportedModel``)."""
        from pert.runtime import ExportedModel

        return ExportedModel(self.path, kind)


def open_model(model: str | Path, *, revision: str | None = None, device: str | None = "auto",
               precision: str | None = "auto", runtime: str | None = "torch", task: str | None = None,
               require_task: bool = False, auto_precision: str = "recorded",
               export: str | None = None) -> OpenedModel:
    """Resolve, check and describe a model; see the module docstring.

    ``runtime``: torch, onnx, or auto (None) to pick by folder (``pert.runtime``): with ``export`` (qa or wor,
    the kind of ONNX export that can stand in for the model), a torch folder opened for the CPU at precision
    auto runs the checked int8 export beside it instead (``pert.runtime.checked_export``), and the log says
    which runtime and precision run. ``task``: the task the model is opened for; with ``require_task`` a folder
    fine-tuned for another (or none) is refused. ``precision`` auto means, with
    ``auto_precision="recorded"``, the folder's fine-tuning precision (for ``task``, when given) where the device
    runs it well, else fp32; with ``"hardware"``, bf16 where the device has fast bf16, else fp32 (training).
    """
    from pert.hardware import bf16_supported, default_precision, resolve_device, resolve_precision
    from pert.runtime import checked_export, engine_of, read_record, resolve_runtime
    from pert.text.tokenizer import load_tokenizer

    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"precision must be auto, fp32, bf16 or fp16, got {precision!r}")
    from pert.convert.folder import open_folder

    path, config, training = open_folder(model, revision)
    if require_task and training.get("task") != task:
        trained = f"fine-tuned for {training['task']}" if training.get("task") else \
            "pre-trained" if training.get("objective") else "not fine-tuned by pert"
        what = "word-order restoration" if task == "wor" else task
        raise ValueError(f"{model}: not a {what} model ({trained}); fine-tune it first with "
                         f"`pert finetune --task {task}`")
    asked, runtime = runtime, resolve_runtime(path, runtime)
    if (export and asked in (None, "auto") and runtime == "torch" and precision in (None, "auto")
            and resolve_device(device).type == "cpu"):
        found = checked_export(path, export)
        if found is not None:
            log.info("%s: running the ONNX export %s instead (%s)", path, found[0], found[1])
            path, runtime = found[0], "onnx"
            path, config, training = open_folder(path)
    if runtime == "onnx":
        if device not in (None, "auto", "cpu") or precision not in (None, "auto", "fp32"):
            raise ValueError("the onnx runtime runs on the CPU at the precision chosen at export "
                             "(`pert export onnx --quantize int8`); drop --device/--precision")
        dev, chosen = torch.device("cpu"), "fp32"
    else:
        from pert.convert.weights import check_model_folder

        check_model_folder(path, config)  # unsafe pickles, truncated files, shapes that do not fit: clear errors
        dev = resolve_device(device)
        if precision in (None, "auto"):
            recorded = training.get("precision") if task is None or training.get("task") == task else None
            chosen = default_precision(recorded, dev) if auto_precision == "recorded" else \
                resolve_precision("auto", dev)
        else:
            chosen = resolve_precision(precision, dev)  # fp16 is refused on a CPU
        if chosen == "bf16" and dev.type == "cpu" and not bf16_supported():
            log.warning("this CPU has no avx512_bf16/AMX: bf16 autocast is likely slower than fp32")
    tokenizer = load_tokenizer(path)
    if len(tokenizer) > int(config.vocab_size):
        raise ValueError(f"{path}: the tokenizer has {len(tokenizer)} tokens but config.json's vocab_size is "
                         f"{config.vocab_size}; the vocabulary does not belong to this model")
    if export:
        record = read_record(path, export) if runtime == "onnx" else {}
        log.info("%s runs on %s, %s, %s", path, engine_of(record) if record else runtime, dev,
                 record.get("precision", chosen))
    return OpenedModel(path=path, tokenizer=tokenizer, config=config, training=training, device=dev,
                       precision=chosen, runtime=runtime)
