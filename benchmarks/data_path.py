"""Data-path throughput: pert's batch construction against Hugging Face's whole-word masking collator, and
``pert prepare`` speed and memory, in one run.

    .venv/bin/python benchmarks/data_path.py            # about 1.5 minutes on 2 cores
    .venv/bin/python benchmarks/data_path.py --quick    # smaller corpora, shorter timings (about 1 minute)
    # prepare before/after: the same rows with pert imported from another checkout's src as well
    mkdir -p /tmp/base && git archive HEAD src | tar -x -C /tmp/base && \
        .venv/bin/python benchmarks/data_path.py --parts prepare --langs zh --compare-src /tmp/base/src

Corpora are real text: Chinese from ``pretrain_corpus`` (CLUECorpusSmall sample and a zhwiki shard, see its
SOURCES.md) with the bert-base-chinese vocabulary, English from ``enwiki-extract-sample`` with bert-base-uncased.

1. **Batch construction**, one process, one torch thread, tokens = B x L positions per second, on the same packed
   sequences (32 x 128 and 8 x 512) of the prepared corpora:

   - ``pert-perlm``: ``CorruptedBatches.__getitem__`` of ``pert.training.data`` (``PreparedCorpus.batch`` packing
     from the memory map, ``pert.objectives.corrupt`` with PerLM, tensors): what the training loop consumes;
   - ``pert-mlm``: the same with the MLM objective;
   - ``hf-wwm``: ``DataCollatorForLanguageModeling(tokenizer, whole_word_mask=True)`` called on those sequences as
     examples (``input_ids``, ``special_tokens_mask``, and an ``offset_mapping`` whose gaps mark pert's word starts,
     so both group the same words); building the examples is not timed.

   Target: PerLM >= 2M tokens/s per core.
2. **pert prepare**, run as its own process (as ``pert prepare`` is), with 1 and 2 worker processes, on the corpus
   repeated to two sizes: characters/s (wall clock of ``prepare`` itself, worker start-up included), CPU seconds
   of the process tree, the steady rate (extra characters / extra seconds between the two sizes), and peak memory:
   the parent's peak RSS (VmHWM), the largest worker's and the whole tree's (summed) sampled every 50 ms
   (``psutil``, where installed). Memory must stay flat as the corpus grows. Target: Chinese >= 1M characters/s
   with 2 processes.

Figures depend on the machine and on what else runs on it: the load average is printed first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tokenizers
import torch
import transformers
from transformers import DataCollatorForLanguageModeling

from pert.corpus.dataset import PreparedCorpus
from pert.corpus.prepare import PrepareConfig, prepare
from pert.objectives import ObjectiveConfig
from pert.text.tokenizer import load_tokenizer
from pert.training.data import CorruptedBatches

ROOT = Path(__file__).resolve().parents[1]
SHAPES = [(32, 128), (8, 512)]
VOCABS = {"zh": "bert-base-chinese", "en": "bert-base-uncased"}
BATCH_TARGET = 2e6  # PerLM tokens/s per core
PREPARE_TARGET = 1e6  # Chinese characters/s with 2 processes

# Runs one ``prepare`` in a fresh interpreter (so that its workers start as those of ``pert prepare`` do) and
# prints its figures as JSON on the last line.
# Its own peak RSS is VmHWM (ru_maxrss would count the benchmark's memory from before the exec).
RUNNER = """
import json, re, resource, sys, time
from pathlib import Path
from pert.corpus.prepare import PrepareConfig, prepare
cfg = PrepareConfig(**json.loads(sys.argv[1]))
t = time.perf_counter()
m = prepare(cfg)
wall = time.perf_counter() - t
me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
status = Path("/proc/self/status")
hwm = re.search(r"VmHWM:\\s+(\\d+)", status.read_text()) if status.exists() else None
print(json.dumps({"chars": m["characters"], "tokens": m["tokens"], "wall": wall,
                  "cpu": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
                  "parent_kb": int(hwm.group(1)) if hwm else me.ru_maxrss}))
"""


def _strip_wiki(path: Path) -> list[str]:
    """Lines of a WikiExtractor file without its ``<doc ...>`` and ``</doc>`` markers."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [x for x in lines if x.strip() and not x.startswith(("<doc ", "</doc>"))]


def zh_texts(root: Path) -> list[str]:
    """The Chinese pre-training sample: CLUECorpusSmall documents and zhwiki paragraphs, one per line."""
    base = root / "zh" / "pretrain_corpus"
    clue = (base / "clue_corpus_small_sample" / "CLUECorpusSmall_sampled.txt").read_text(encoding="utf-8")
    return [x for x in clue.splitlines() if x.strip()] + _strip_wiki(base / "zhwiki" / "AA" / "wiki_00")


def en_texts(root: Path, max_chars: int) -> list[str]:
    """English Wikipedia lines (titles and paragraphs) up to about ``max_chars`` characters."""
    docs, total = [], 0
    for path in sorted((root / "en" / "enwiki-extract-sample").rglob("wiki_*")):
        for line in _strip_wiki(path):
            docs.append(line)
            total += len(line)
            if total >= max_chars:
                return docs
    return docs


def write_corpus(path: Path, texts: list[str], repeat: int) -> int:
    """Write the texts ``repeat`` times, one per line; returns the characters written (newlines excluded)."""
    block = "\n".join(texts) + "\n"
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(repeat):
            f.write(block)
    return repeat * sum(map(len, texts))


def best_rate(step: Callable[[int], object], units: int, seconds: float, rounds: int = 3) -> float:
    """Best units/s over ``rounds`` rounds of calling ``step(k)`` for about ``seconds`` each."""
    step(0)
    best, k = 0.0, 1
    for _ in range(rounds):
        n, t0 = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - t0) < seconds:
            step(k)
            n, k = n + 1, k + 1
        best = max(best, n * units / elapsed)
    return best


def hf_examples(corpus: PreparedCorpus, seq_ids: np.ndarray, seq_len: int) -> list[dict]:
    """The packed sequences as collator examples; offsets leave a gap before each of pert's word starts, which
    is where the collator starts a word."""
    packed = corpus.batch(seq_ids, seq_len)
    start = np.arange(seq_len) + np.cumsum(packed.word_start, axis=1)
    offsets = np.stack([start, start + 1], axis=-1)
    return [{"input_ids": packed.ids[r].tolist(), "special_tokens_mask": packed.special[r].astype(int).tolist(),
             "offset_mapping": offsets[r].tolist()} for r in range(len(seq_ids))]


def batch_rates(corpus: PreparedCorpus, batch: int, seq_len: int, seconds: float, n_batches: int = 16) -> dict:
    """tokens/s of pert-perlm, pert-mlm and hf-wwm on the same ``n_batches`` batches, cycled."""
    n = min(corpus.num_sequences(seq_len) - 1, batch * n_batches)  # the last sequence may be short
    seq_ids = np.random.default_rng(0).permutation(corpus.num_sequences(seq_len) - 1)[:n]
    n_batches = n // batch
    rates = {}
    for name, objective in (("pert-perlm", "perlm"), ("pert-mlm", "mlm")):
        ds = CorruptedBatches(corpus, seq_ids, batch, seq_len, ObjectiveConfig(objective=objective), (0, 0, 0))
        rates[name] = best_rate(lambda k, ds=ds: ds[k % n_batches], batch * seq_len, seconds)
    tok = load_tokenizer(corpus.tokenizer_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "random token replacement is not supported with whole word masking"
        collator = DataCollatorForLanguageModeling(tok, whole_word_mask=True, seed=0)
        examples = [hf_examples(corpus, seq_ids[k * batch:(k + 1) * batch], seq_len) for k in range(n_batches)]
        rates["hf-wwm"] = best_rate(lambda k: collator(examples[k % n_batches]), batch * seq_len, seconds)
    return rates


def run_prepare(corpus: Path, vocab: Path, lang: str, workers: int, out: Path, src: str | None) -> dict:
    """One ``prepare`` in its own process; ``src``: another checkout's ``src`` folder to import pert from."""
    cfg = {"out": str(out), "vocab": str(vocab), "lang": lang, "inputs": [str(corpus)], "workers": workers,
           "force": True}
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, json.dumps(cfg)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peaks: dict = {}
    sampler = threading.Thread(target=_sample_rss, args=(proc, peaks), daemon=True)
    sampler.start()
    try:
        stdout, stderr = proc.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise RuntimeError(f"prepare {lang} workers={workers} ran over 900 s") from None
    if proc.returncode:
        raise RuntimeError(f"prepare {lang} workers={workers} failed:\n{stderr[-3000:]}")
    sampler.join()
    return {**json.loads(stdout.strip().splitlines()[-1]), **peaks}


def _sample_rss(proc: subprocess.Popen, peaks: dict) -> None:
    """Sampled peaks (kB) of the largest worker's RSS and of the whole tree's summed RSS, every 50 ms; nothing
    without psutil."""
    try:
        import psutil
    except ImportError:
        return
    try:
        root = psutil.Process(proc.pid)
    except psutil.Error:
        return
    worker = tree = 0
    while proc.poll() is None:
        try:
            kids = [p.memory_info().rss for p in root.children(recursive=True)]
            total = root.memory_info().rss + sum(kids)
        except psutil.Error:
            continue
        worker, tree = max([worker, *kids]), max(tree, total)
        peaks.update(worker_kb=worker // 1024 or None, tree_kb=tree // 1024)
        time.sleep(0.05)


def _m(x: float) -> str:
    return f"{x / 1e6:.2f}M"


def _mb(kb: int | None) -> str:
    return "n/a" if kb is None else f"{kb / 1024:.0f}"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--quick", action="store_true", help="smaller corpora and shorter timings")
    p.add_argument("--parts", nargs="+", default=["batch", "prepare"], choices=["batch", "prepare"])
    p.add_argument("--langs", nargs="+", default=["zh", "en"], choices=["zh", "en"])
    p.add_argument("--compare-src", default=None,
                   help="also run prepare with pert imported from this folder (e.g. an older checkout's src)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    seconds = 0.3 if args.quick else 1.0
    repeats = (1, 4) if args.quick else (2, 10)  # Chinese corpus repeats (about 1.05M characters each)
    en_chars = 500_000 if args.quick else 2_000_000
    en_repeats = (1, 4) if args.quick else (1, 5)

    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"data_path: {os.cpu_count()} CPUs, load average {load}; Python {platform.python_version()}, "
          f"numpy {np.__version__}, torch {torch.__version__}, transformers {transformers.__version__}, "
          f"tokenizers {tokenizers.__version__}")
    texts = {"zh": zh_texts(args.data_root), "en": en_texts(args.data_root, en_chars)}
    texts = {lang: texts[lang] for lang in args.langs}
    vocab = {lang: args.data_root / "vocab" / name for lang, name in VOCABS.items()}

    with tempfile.TemporaryDirectory(prefix="pert-data-path-") as tmp:
        tmp = Path(tmp)
        if "batch" in args.parts:
            _batch_part(tmp, texts, vocab, seconds)
        if "prepare" in args.parts:
            _prepare_part(tmp, texts, vocab, {"zh": repeats, "en": en_repeats}, args.compare_src)


def _batch_part(tmp: Path, texts: dict, vocab: dict, seconds: float) -> None:
    print(f"\n1. Batch construction: one process, 1 torch thread; tokens/s = B x L positions per second, "
          f"best of 3 rounds of {seconds:.1f} s")
    print(f"{'corpus':7s}{'B x L':>9s}{'pert-perlm':>12s}{'pert-mlm':>10s}{'hf-wwm':>10s}{'perlm/hf':>10s}"
          f"{'mlm/hf':>8s}")
    lowest = float("inf")
    for lang in texts:
        chars = write_corpus(tmp / f"{lang}-batch.txt", texts[lang], 1)
        out = tmp / f"{lang}-batch"
        manifest = prepare(PrepareConfig(out=str(out), vocab=str(vocab[lang]), lang=lang,
                                         inputs=[str(tmp / f"{lang}-batch.txt")], workers=1))
        corpus = PreparedCorpus(out)
        for batch, seq_len in SHAPES:
            r = batch_rates(corpus, batch, seq_len, seconds)
            lowest = min(lowest, r["pert-perlm"])
            print(f"{lang:7s}{f'{batch}x{seq_len}':>9s}{_m(r['pert-perlm']):>12s}{_m(r['pert-mlm']):>10s}"
                  f"{_m(r['hf-wwm']):>10s}{r['pert-perlm'] / r['hf-wwm']:>9.1f}x{r['pert-mlm'] / r['hf-wwm']:>7.1f}x")
        print(f"{'':7s}({chars / 1e6:.2f}M characters, {manifest['tokens'] / 1e6:.2f}M tokens)")
    verdict = "met" if lowest >= BATCH_TARGET else "NOT met"
    print(f"PerLM target >= {_m(BATCH_TARGET)} tokens/s per core: {verdict} (lowest {_m(lowest)})")


def _prepare_part(tmp: Path, texts: dict, vocab: dict, repeats: dict, compare_src: str | None) -> None:
    print("\n2. pert prepare, its own process; chars/s = characters / wall seconds of prepare (worker start-up "
          "included);\n   steady = extra characters / extra seconds from the smaller to the larger corpus; "
          "memory: peak RSS in MB")
    versions = [("this", None)] + ([("other", compare_src)] if compare_src else [])
    print(f"{'code':6s}{'lang':5s}{'workers':>8s}{'chars':>8s}{'wall s':>8s}{'chars/s':>9s}{'cpu s':>7s}"
          f"{'chars/cpu-s':>12s}{'steady':>8s}{'parent':>8s}{'worker':>8s}{'tree':>6s}")
    steady: dict[tuple, float] = {}
    whole: dict[tuple, float] = {}  # characters / wall seconds of the larger corpus
    peaks: dict[tuple, list] = {}
    for lang in texts:
        files = []
        for rep in repeats[lang]:
            path = tmp / f"{lang}-x{rep}.txt"
            write_corpus(path, texts[lang], rep)
            files.append(path)
        for code, src in versions:
            for workers in (1, 2):
                rows = [run_prepare(f, vocab[lang], lang, workers, tmp / "prepared", src) for f in files]
                small, big = rows
                extra = big["wall"] - small["wall"]  # start-up noise can exceed it on a busy machine
                steady[code, lang, workers] = (big["chars"] - small["chars"]) / extra if extra > 0 else float("nan")
                whole[code, lang, workers] = big["chars"] / big["wall"]
                peaks[code, lang, workers] = [(r["parent_kb"], r.get("tree_kb")) for r in rows]
                for i, r in enumerate(rows):
                    rate = f"{steady[code, lang, workers] / 1e6:.2f}M" if i else ""
                    print(f"{code:6s}{lang:5s}{workers:>8d}{_m(r['chars']):>8s}{r['wall']:>8.2f}"
                          f"{_m(r['chars'] / r['wall']):>9s}{r['cpu']:>7.2f}{_m(r['chars'] / r['cpu']):>12s}"
                          f"{rate:>8s}{_mb(r['parent_kb']):>8s}{_mb(r.get('worker_kb')):>8s}{_mb(r.get('tree_kb')):>6s}")
    print("memory, larger / smaller corpus (tree peak where sampled, else parent peak):")
    for key, (small, big) in peaks.items():
        i = 1 if small[1] and big[1] else 0
        print(f"  {key[0]} {key[1]} workers={key[2]}: {big[i] / small[i]:.2f}x "
              f"({_mb(small[i])} -> {_mb(big[i])} MB for {repeats[key[1]][1] // repeats[key[1]][0]}x the text)")
    if compare_src:
        print("this / other code, steady rate: " + ", ".join(
            f"{lang} {w} worker{'s' * (w > 1)} {steady['this', lang, w] / steady['other', lang, w]:.2f}x"
            for lang in texts for w in (1, 2)))
    if "zh" not in texts:
        return
    zh2 = steady["this", "zh", 2]
    verdict = "not measured (noise)" if zh2 != zh2 else "met" if zh2 >= PREPARE_TARGET else "NOT met"
    print(f"Chinese target >= {_m(PREPARE_TARGET)} characters/s with 2 processes: {verdict} (steady {_m(zh2)}; "
          f"whole run of the larger corpus, start-up included, {_m(whole['this', 'zh', 2])}); "
          f"load average now {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
