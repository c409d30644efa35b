"""Where onnxruntime spends a reader's time: kernel time by operator type, fp32 and int8 exports side by side.

    .venv/bin/python benchmarks/onnx_profile.py        # after onnx_inference.py built its readers

For each reader that ``onnx_inference.py`` cached under ``benchmarks/.models`` (its ``best-onnx`` and
``best-onnx-int8`` exports), one call shape like the benchmark's (SQuAD: 3 windows of 160 tokens, about its
512-token budget at the mean window length; CMRC 2018: 1 window of 448 tokens) runs ``--calls`` times with
onnxruntime's profiler on; printed: each operator type's share of the kernel time and the calls' mean wall time.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHAPES = {"squad-minilm": (3, 160), "cmrc-minilm": (1, 448)}  # (windows per call, tokens per window)


def session(model: Path, threads: int, profile: bool = False):  # noqa: ANN201 (onnxruntime is optional)
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.enable_profiling = profile
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def feeds(sess, batch: int, length: int) -> dict[str, np.ndarray]:  # noqa: ANN001
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 5000, (batch, length)).astype(np.int64)
    ids[:, 0], ids[:, -1] = 101, 102
    every = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    return {i.name: every[i.name] for i in sess.get_inputs()}


def op_shares(model: Path, batch: int, length: int, calls: int, threads: int) -> tuple[dict[str, float], float]:
    """Kernel-time share per operator type and mean seconds per call (profiled calls, after a warm-up)."""
    sess = session(model, threads, profile=True)
    f = feeds(sess, batch, length)
    for _ in range(3):
        sess.run(None, f)
    t0 = time.perf_counter()
    for _ in range(calls):
        sess.run(None, f)
    per_call = (time.perf_counter() - t0) / calls
    trace = Path(sess.end_profiling())
    events = json.loads(trace.read_text())
    trace.unlink()
    totals: collections.Counter[str] = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            totals[e["args"]["op_name"]] += e["dur"]
    whole = sum(totals.values())
    return {op: t / whole for op, t in totals.most_common()}, per_call


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=30)
    p.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads (the benchmark's: 2)")
    args = p.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}; {args.threads} threads; {args.calls} profiled calls per model")
    found = False
    for name, (batch, length) in SHAPES.items():
        folder = HERE / ".models" / name / "seed-1"
        if not (folder / "best-onnx-int8" / "model.onnx").is_file():
            continue
        found = True
        print(f"\n{name}: {batch} x {length} tokens per call")
        for kind in ("best-onnx", "best-onnx-int8"):
            shares, per_call = op_shares(folder / kind / "model.onnx", batch, length, args.calls, args.threads)
            top = ", ".join(f"{op} {100 * s:.1f}%" for op, s in shares.items() if s >= 0.005)
            print(f"  {kind}: {1000 * per_call:.1f} ms per call; {top}")
    if not found:
        raise SystemExit("no cached readers under benchmarks/.models: run benchmarks/onnx_inference.py first")


if __name__ == "__main__":
    main()
