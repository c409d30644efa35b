"""Model-call throughput of `pert qa` by padded tokens per call, torch fp32 and the int8 ONNX export, one run.

    .venv/bin/python benchmarks/batch_tokens.py        # after onnx_inference.py built its readers (~2 min)

Where ``pert.runtime.CPU_BATCH_TOKENS`` comes from: the readers that benchmarks/onnx_inference.py fine-tunes and
exports (cached under ``benchmarks/.models``) score the windows of 200 SQuAD 1.1 and 60 CMRC 2018 questions
(``QuestionAnswerer.logits``: model calls only, no tokenising or decoding) with windows grouped by length and
each call capped at a budget of padded tokens (items x longest window); printed: windows/s per budget.
"""

from __future__ import annotations

import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUDGETS = (512, 1024, 2048, 4096, None)


def main() -> None:
    import pert.runtime
    from pert.qa import QuestionAnswerer
    from pert.tasks.mrc_data import read_mrc_file
    from pert.tasks.mrc_features import encode_examples

    models = HERE / ".models"
    data = HERE.parent.parent / "shared" / "data"
    cases = [("SQuAD 1.1", models / "squad-minilm" / "seed-1", 384,
              read_mrc_file(models / "squad-split" / "dev-v1.1.json")[0][:200]),
             ("CMRC 2018", models / "cmrc-minilm" / "seed-1", 512,
              read_mrc_file(data / "zh" / "cmrc2018" / "cmrc2018_dev.json")[0][:60])]
    for name, folder, max_len, examples in cases:
        if not (folder / "best-onnx-int8").is_dir():
            raise SystemExit(f"{folder}: run benchmarks/onnx_inference.py first (it builds and exports the readers)")
        for side, model, runtime, precision in (("torch fp32", folder / "best", "torch", "fp32"),
                                                ("onnxruntime int8", folder / "best-onnx-int8", "onnx", "auto")):
            qa = QuestionAnswerer(model, device="cpu", runtime=runtime, precision=precision, max_seq_len=max_len,
                                  doc_stride=128, max_query_len=64)
            windows = encode_examples(examples, qa.tokenizer, max_len, 128, 64)
            qa.logits(windows[:8])  # warm-up
            rates = []
            for budget in BUDGETS:
                pert.runtime.CPU_BATCH_TOKENS[runtime] = budget
                start = time.perf_counter()
                qa.logits(windows)
                rates.append(f"{budget or 'none'}: {len(windows) / (time.perf_counter() - start):.1f}")
            print(f"{name} ({len(windows)} windows), {side}: windows/s by padded tokens per call: "
                  + ", ".join(rates), flush=True)


if __name__ == "__main__":
    main()
