"""End to end on CI scale: People's Daily -> WOR data -> a micro PERT pre-trained with PerLM on the WOR train
sentences -> `finetune --task wor` through the shared harness -> held-out test scores against copying the
input -> `pert restore` on sentences no step of the pipeline saw.

Held-out: the test sentences come from documents (lines) that neither pre-training nor fine-tuning saw.
The data here are single two-word swaps (10% of sentences untouched) in sentences of 8-30 tokens: the
corruption a few CPU-minutes can teach a 4-layer model. Copying the input scores 0 on correction and
position F1 by definition; the fine-tuned model must beat it (measured here: correction F1 6.5, position
F1 15.4 after 500 pre-training and 2,000 fine-tuning steps, about 6 minutes in all; see docs/wor.md).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from pert.cli import main
from pert.corpus.prepare import PrepareConfig, prepare
from pert.metrics.wor import wor_scores
from pert.tasks import FinetuneConfig, finetune
from pert.text import load_tokenizer
from pert.text.vocab import build_vocab
from pert.training.config import PretrainConfig
from pert.training.loop import pretrain
from pert.wor.data import WorDataConfig, make_wor_data, read_wor_jsonl
from pert.wor.sources import peoples_daily_lines, write_lines

SEQ = 32
PRETRAIN_STEPS = 500
FINETUNE_STEPS = 2000


def test_pretrain_finetune_restore(peoples_daily_tagged: Path, tmp_path: Path, capsys) -> None:
    t0 = time.perf_counter()
    torch.manual_seed(0)
    lines = list(peoples_daily_lines(peoples_daily_tagged))
    corpus = write_lines(iter(lines), tmp_path / "pd.txt")
    build_vocab(iter(lines), tmp_path / "vocab.txt", vocab_size=8000)
    wor = tmp_path / "wor"
    make_wor_data(WorDataConfig(out=str(wor), vocab=str(tmp_path / "vocab.txt"), inputs=[str(corpus)],
                                max_tokens=SEQ - 2, negative_ratio=0.1, span_probs=[1.0, 0.0, 0.0], max_corruptions=1,
                                dev_ratio=0.02, test_ratio=0.02, max_dev=200, max_test=300))
    train, test = read_wor_jsonl(wor / "train.jsonl"), read_wor_jsonl(wor / "test.jsonl")
    assert len(test) == 300 and len(train) > 10000
    assert not {e.original for e in test} & {e.original for e in train}

    # A micro PERT (4 layers, 128 hidden; 64-token sequences as in the demo) pre-trained with PerLM on the WOR train
    # sentences only, in the default span scope (tokens move within their unit): with the global ablation an earlier
    # tiny recipe scored correction F1 0.9 against 7.8 (CI, an earlier version).
    prepare(PrepareConfig(out=str(tmp_path / "prep"), vocab=str(tmp_path / "vocab.txt"), lang="zh", workers=1,
                          inputs=[str(write_lines((e.original for e in train), tmp_path / "pretrain.txt"))]))
    summary = pretrain(PretrainConfig(data=str(tmp_path / "prep"), out=str(tmp_path / "pt"), preset="micro",
                                      max_seq_len=64, batch_size=64, max_steps=PRETRAIN_STEPS, lr=1e-3,
                                      warmup_steps=PRETRAIN_STEPS // 20, eval_every=0, save_every=0,
                                      eval_sequences=64, num_workers=0))
    assert summary["steps"] == PRETRAIN_STEPS
    with safe_open(str(tmp_path / "pt" / "final" / "model.safetensors"), "pt") as f:
        assert "perlm_head.position_bias" in f.keys()  # fine-tuning starts from the pre-trained head
    t_pre = time.perf_counter() - t0

    run = tmp_path / "ft"
    precision = "bf16" if summary["precision"] == "bf16" else "fp32"
    finetune(FinetuneConfig(task="wor", model=str(tmp_path / "pt" / "final"), data=str(wor), out=str(run),
                            task_args=["moved_weight=5"], lr=1e-3, batch_size=32, max_seq_len=SEQ,
                            max_steps=FINETUNE_STEPS, epochs=100, eval_every=FINETUNE_STEPS, splits=["test"],
                            precision=precision))
    metrics = json.loads((run / "seed-1" / "metrics.json").read_text("utf-8"))["test"]
    pred_file = run / "seed-1" / "predictions_test.jsonl"
    preds = [json.loads(line) for line in pred_file.read_text("utf-8").splitlines()]
    assert [p["id"] for p in preds] == [e.id for e in test]
    for e, p in zip(test, preds, strict=True):  # a true permutation of the input, no character lost or added
        assert Counter(p["prediction"]) == Counter(e.corrupted)
        assert p["correct"] == (p["prediction"] == e.original)

    # The harness's sentence-level scores are pert.metrics.wor on the predicted texts. (Its position scores use
    # the permuted input tokens; re-tokenising a prediction's text can split digits and Latin letters otherwise.)
    tok = load_tokenizer(tmp_path / "vocab.txt")

    def scores(predictions: list[str]) -> dict[str, float]:
        return wor_scores([tok.tokenize(e.corrupted) for e in test], [tok.tokenize(e.original) for e in test],
                          [tok.tokenize(x) for x in predictions])

    model_scores = scores([p["prediction"] for p in preds])
    for key in ("correction_f1", "detection_f1", "sentence_accuracy"):
        assert metrics[key] == pytest.approx(100 * model_scores[key])
    copy = scores([e.corrupted for e in test])
    negatives = sum(not e.moves for e in test) / len(test)
    assert copy["correction_f1"] == 0.0 and copy["position_f1"] == 0.0
    assert copy["sentence_accuracy"] == pytest.approx(negatives)
    # above copying the input (0 and 0): whole sentences restored, and moved tokens put back
    assert metrics["correction_f1"] >= 2.0 and metrics["position_f1"] >= 8.0, metrics

    # `pert restore` on held-out sentences gives exactly the fine-tuned model's predictions (same precision and
    # batches as the harness's evaluation: bf16 rounding may otherwise flip a near tie) ...
    best = run / "seed-1" / "best"
    same = ["--precision", precision, "--batch-size", "64"]
    assert main(["restore", "--model", str(best), "--input", str(wor / "test.jsonl"),
                 "--output", str(tmp_path / "restored.jsonl"), *same]) == 0
    restored = [json.loads(line) for line in (tmp_path / "restored.jsonl").read_text("utf-8").splitlines()]
    assert [r["output"] for r in restored] == [p["prediction"] for p in preds]
    assert f"correction_f1 {metrics['correction_f1']:.2f}" in capsys.readouterr().out
    # ... and fixes swapped pairs in sentences it never saw, from the command line
    fixed = [e for e, p in zip(test, preds, strict=True) if len(e.moves) == 1 and p["correct"]]
    assert fixed, "no held-out sentence with one swapped pair was restored"
    assert main(["restore", "--model", str(best), *(e.corrupted for e in fixed), *same]) == 0
    outputs = capsys.readouterr().out.splitlines()
    assert len(outputs) == len(fixed)
    assert sum(o == e.original for o, e in zip(outputs, fixed, strict=True)) >= len(fixed) / 2

    with capsys.disabled():
        print(f"\nWOR held-out test ({len(test)} sentences, {negatives:.0%} unchanged; pre-training {t_pre:.0f} s, "
              f"total {time.perf_counter() - t0:.0f} s)\n  model: "
              + ", ".join(f"{k} {v:.1f}" for k, v in metrics.items())
              + f"\n  copy the input: correction_f1 0.0, position_f1 0.0, sentence_accuracy "
              f"{100 * copy['sentence_accuracy']:.1f}\n  restored: {fixed[0].corrupted} -> {fixed[0].original}")
