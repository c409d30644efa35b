"""Time the transformers 4.x question-answering pipeline; run by ``benchmarks/inference.py`` in its own venv.

    benchmarks/.venv-hf4/bin/python benchmarks/hf4_qa_worker.py JOB.json RESULT.json

JOB.json: ``model`` (a BertForQuestionAnswering folder), ``items`` (``question``, ``context``, ``overlap``),
``max_seq_len``, ``max_question_len``, ``max_answer_len``, ``batch_size``, ``warmup`` (questions answered
once before the clock starts). The pipeline's ``doc_stride`` is the *overlap* of consecutive windows
(pert's is the step between them), so each item carries the overlap that gives pert's windows; items
are answered in one pipeline call per distinct overlap. RESULT.json: ``seconds``, ``answers`` (in item
order), ``windows`` (a hash of each item's window token ids, to check both sides saw the same inputs)
and the versions. Imports nothing from pert: it runs where transformers is 4.x.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any


def window_hash(windows: list[list[int]]) -> str:
    """Short hash of a question's window token ids (the same function as in inference.py)."""
    return hashlib.sha1(json.dumps(windows).encode()).hexdigest()[:16]


def main(job_path: str, result_path: str) -> None:
    """Load the model, warm up, time the pipeline over every item, write RESULT.json."""
    import torch
    import transformers
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, pipeline

    job: dict[str, Any] = json.loads(Path(job_path).read_text(encoding="utf-8"))
    model, info = AutoModelForQuestionAnswering.from_pretrained(job["model"], output_loading_info=True)
    missing = [k for k in info["missing_keys"] if not k.endswith("position_ids")]
    if missing:
        raise SystemExit(f"{job['model']}: weights missing in transformers {transformers.__version__}: {missing}")
    tokenizer = AutoTokenizer.from_pretrained(job["model"])
    pipe = pipeline("question-answering", model=model.eval(), tokenizer=tokenizer, device=-1)
    items = job["items"]
    options = {"max_seq_len": job["max_seq_len"], "max_question_len": job["max_question_len"],
               "max_answer_len": job["max_answer_len"], "batch_size": job["batch_size"], "top_k": 1,
               "handle_impossible_answer": False, "align_to_words": False}

    groups: dict[int, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(int(item["overlap"]), []).append(i)

    def run(indices: list[int], overlap: int) -> list[str]:
        out = pipe(question=[items[i]["question"] for i in indices],
                   context=[items[i]["context"] for i in indices], doc_stride=overlap, **options)
        out = [out] if isinstance(out, dict) else out
        return [o["answer"] for o in out]

    warm = list(range(min(job["warmup"], len(items))))
    if warm:
        run(warm, int(items[0]["overlap"]))
    answers: list[str] = [""] * len(items)
    start = time.perf_counter()
    for overlap, indices in groups.items():
        for i, a in zip(indices, run(indices, overlap), strict=True):
            answers[i] = a
    seconds = time.perf_counter() - start

    windows = []
    for item in items:
        enc = tokenizer(item["question"], item["context"], truncation="only_second",
                        max_length=job["max_seq_len"], stride=int(item["overlap"]),
                        return_overflowing_tokens=True)
        windows.append(window_hash([list(x) for x in enc["input_ids"]]))
    result = {"seconds": seconds, "answers": answers, "windows": windows, "calls": len(groups),
              "transformers": transformers.__version__, "torch": torch.__version__,
              "threads": torch.get_num_threads(), "attention": model.config._attn_implementation}
    Path(result_path).write_text(json.dumps(result, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
