"""End to end on CI scale: a tiny PERT pre-trained (PerLM) on People's Daily, fine-tuned on WOR data made
from the same text, scored on held-out sentences against copying the input, then `pert restore`.

Held-out means: the WOR test sentences come from documents that neither pre-training nor fine-tuning saw
(pre-training reads only the WOR train split's sentences).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from transformers import BertConfig

from pert.cli import main
from pert.convert.hf import save_model_folder
from pert.corpus.prepare import PrepareConfig, prepare
from pert.metrics.wor import wor_scores
from pert.modeling import PertForPreTraining
from pert.tasks import FinetuneConfig, finetune
from pert.text import load_tokenizer
from pert.text.vocab import build_vocab
from pert.training.config import PretrainConfig
from pert.training.loop import pretrain
from pert.wor.data import WorDataConfig, make_wor_data, read_wor_jsonl
from pert.wor.sources import peoples_daily_lines, write_lines

LINES = 6000  # People's Daily paragraphs used
SEQ = 64
PRETRAIN_STEPS = 300
FINETUNE_STEPS = 300


def test_pretrain_finetune_restore(peoples_daily_tagged: Path, tmp_path: Path, capsys) -> None:
    t0 = time.perf_counter()
    torch.manual_seed(0)
    lines = list(peoples_daily_lines(peoples_daily_tagged))[:LINES]
    corpus = write_lines(iter(lines), tmp_path / "pd.txt")
    build_vocab(iter(lines), tmp_path / "vocab.txt", vocab_size=4000)

    wor = tmp_path / "wor"
    stats = make_wor_data(WorDataConfig(out=str(wor), vocab=str(tmp_path / "vocab.txt"), inputs=[str(corpus)],
                                        max_tokens=SEQ - 2, dev_ratio=0.03, test_ratio=0.05, max_dev=150,
                                        max_test=300))
    train = read_wor_jsonl(wor / "train.jsonl")
    test = read_wor_jsonl(wor / "test.jsonl")
    assert len(test) == 300 and len(train) > 5000
    assert not {e.original for e in test} & {e.original for e in train}

    # A 2-layer PERT, pre-trained with PerLM on the WOR train sentences only.
    pre_corpus = write_lines((e.original for e in train), tmp_path / "pretrain.txt")
    prepare(PrepareConfig(out=str(tmp_path / "prep"), vocab=str(tmp_path / "vocab.txt"), lang="zh",
                          inputs=[str(pre_corpus)], workers=1))
    tok = load_tokenizer(tmp_path / "vocab.txt")
    init = PertForPreTraining(BertConfig(vocab_size=len(tok), hidden_size=128, num_hidden_layers=2,
                                         num_attention_heads=4, intermediate_size=512, max_position_embeddings=SEQ))
    save_model_folder(init, tok, tmp_path / "init")
    summary = pretrain(PretrainConfig(data=str(tmp_path / "prep"), out=str(tmp_path / "pt"),
                                      init_from=str(tmp_path / "init"), max_seq_len=SEQ, batch_size=32,
                                      max_steps=PRETRAIN_STEPS, lr=2e-3, warmup_steps=20, eval_every=0,
                                      save_every=0, eval_sequences=32, num_workers=0, precision="fp32"))
    t_pre = time.perf_counter() - t0
    assert summary["eval"]["acc_shuffled"] > 0.2  # PerLM learned something (own position scores 0)

    run = tmp_path / "ft"
    finetune(FinetuneConfig(task="wor", model=str(tmp_path / "pt" / "final"), data=str(wor), out=str(run),
                            lr=2e-3, batch_size=32, max_seq_len=SEQ, max_steps=FINETUNE_STEPS,
                            eval_steps=FINETUNE_STEPS, eval_splits=["test"], warmup_ratio=0.05))
    metrics = json.loads((run / "seed-1" / "metrics.json").read_text("utf-8"))["test"]
    copy = wor_scores([e.tokens for e in test], [[e.tokens[j] for j in e.labels] for e in test],
                      [e.tokens for e in test])
    negatives = sum(not e.moves for e in test) / len(test)
    print(f"\nWOR held-out test ({len(test)} sentences, {negatives:.0%} unchanged), pre-training {t_pre:.0f}s, "
          f"total {time.perf_counter() - t0:.0f}s:\n  model: " +
          ", ".join(f"{k} {v:.1f}" for k, v in metrics.items()) +
          f"\n  copy the input: correction_f1 {100 * copy['correction_f1']:.1f}, "
          f"sentence_accuracy {100 * copy['sentence_accuracy']:.1f}")
    assert copy["correction_f1"] == 0.0
    assert metrics["correction_f1"] >= 15.0
    assert metrics["position_f1"] >= 25.0
    assert metrics["sentence_accuracy"] >= 100 * copy["sentence_accuracy"] + 5.0

    # `pert restore` fixes a swapped pair in a held-out sentence (one the model corrected on the test set).
    preds = [json.loads(line) for line in (run / "seed-1" / "predictions_test.jsonl").read_text("utf-8").splitlines()]
    fixed = [e for e, p in zip(test, preds, strict=True)
             if p["correct"] and len(e.moves) == 1 and e.moves[0][1] - e.moves[0][0] <= 4
             and e.corrupted != e.original]
    assert fixed, "no held-out sentence with one swapped pair was restored"
    e = fixed[0]
    capsys.readouterr()
    assert main(["restore", "--model", str(run / "seed-1" / "best"), e.corrupted]) == 0
    assert capsys.readouterr().out == e.original + "\n"
    print(f"  restored: {e.corrupted} -> {e.original}")
