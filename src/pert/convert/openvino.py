"""Static int8 for CPUs: ``pert export onnx --quantize int8 --calibrate DATA``.

The model's graph is converted to OpenVINO (``openvino.convert_model`` of the torch module, dynamic batch and
length) and quantised by NNCF (``nncf.quantize``, transformer mode: SmoothQuant, int8 weights per channel,
int8 activations whose ranges come from ``CALIBRATION_ITEMS`` real inputs of DATA, fast bias correction). The
result is OpenVINO IR (``model.xml`` and ``model.bin``) that ``pert.runtime.ExportedModel`` runs on OpenVINO's
CPU plugin (``pert.runtime.compile_ir``), lengths padded to a multiple of 32. On the project's two real readers it
answered 2.23x (SQuAD 1.1) and 2.05x (CMRC 2018) as many questions per second as torch fp32, F1 within 0.25,
92.5% and 91.3% of the answers equal; onnxruntime's dynamic int8 reached 1.65x and 1.51x (benchmarks/README.md).
NNCF cannot quantise onnxruntime's fused graph (its com.microsoft operators), so the torch module is converted
directly.
"""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import numpy as np
import torch

IR_FILE = "model.xml"
CALIBRATION_ITEMS = 300  # windows (QA) or sentences (wor) whose activations set the int8 ranges


def calibration_inputs(model_dir: Path, task: str, data: str | Path, items: int = CALIBRATION_ITEMS,
                       seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Up to ``items`` model inputs (batch of one, int64) from a seeded sample of ``data``: windows of its
    questions at the folder's own window settings (SQuAD-format JSON), or its sentences (.txt/.jsonl)."""
    if task == "qa":
        from pert.qa import QuestionAnswerer
        from pert.tasks.mrc_data import read_mrc_file
        from pert.tasks.mrc_features import encode_examples

        qa = QuestionAnswerer(model_dir, device="cpu", precision="fp32", runtime="torch")
        examples = read_mrc_file(data)[0]
        sample = random.Random(seed).sample(examples, min(items, len(examples)))
        rows = encode_examples(sample, qa.tokenizer, qa.max_seq_len, qa.doc_stride, qa.max_query_len)[:items]
        names: tuple[str, ...] = ("input_ids", "attention_mask", "token_type_ids")
    else:
        from pert.models import open_model
        from pert.wor.restore import read_sentences

        opened = open_model(model_dir, device="cpu", precision="fp32", runtime="torch")
        limit = min(int(opened.training.get("max_seq_len") or 10**9), int(opened.config.max_position_embeddings))
        texts = read_sentences(Path(data))[0]
        sample = random.Random(seed).sample(texts, min(items, len(texts)))
        rows = [opened.tokenizer(t, truncation=True, max_length=limit) for t in sample]
        names = ("input_ids", "attention_mask")
    if not rows:
        what = "questions" if task == "qa" else "sentences"
        raise ValueError(f"{data}: nothing to calibrate on (no {what})")
    return [{k: np.asarray([row[k]], dtype=np.int64) for k in names} for row in rows]


def quantize_static(graph: torch.nn.Module, calibration: list[dict[str, np.ndarray]], out_file: Path) -> None:
    """``graph`` (a torch module taking the calibration dicts' keys) converted to OpenVINO, quantised to int8
    with NNCF on ``calibration`` and saved as IR at ``out_file`` (weights not compressed to fp16)."""
    import logging

    import nncf
    import openvino as ov

    nncf.set_log_level(logging.WARNING)
    example = {k: torch.from_numpy(v) for k, v in calibration[0].items()}
    with torch.inference_mode(), warnings.catch_warnings():  # the tracer's notes on shape checks it fixes
        warnings.simplefilter("ignore")
        model = ov.convert_model(graph, example_input=example)
    quantized = nncf.quantize(model, nncf.Dataset(calibration), model_type=nncf.ModelType.TRANSFORMER,
                              subset_size=len(calibration))
    ov.save_model(quantized, str(out_file), compress_to_fp16=False)
