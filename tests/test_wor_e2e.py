"""End to end on CI scale: People's Daily -> WOR data -> a tiny PERT pre-trained with PerLM on the WOR
train sentences -> `finetune --task wor` through the shared harness -> held-out test scores -> `pert restore`.

Held-out: the test sentences come from documents that neither pre-training nor fine-tuning saw. At this
scale (a 2-layer model, a few hundred steps on 2 CPU cores) the model does not yet beat copying the input
(it learns to copy: correction F1 0; see docs/wor.md), so the test checks what the pipeline guarantees --
a true permutation for every sentence, metrics that agree with the predictions file and with the copy
baseline's definition, and `pert restore` giving exactly the harness's predictions -- and prints the scores.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
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

LINES = 3000  # People's Daily paragraphs
SEQ = 48
PRETRAIN_STEPS = 40
FINETUNE_STEPS = 40


def test_pretrain_finetune_restore(peoples_daily_tagged: Path, tmp_path: Path, capsys) -> None:
    t0 = time.perf_counter()
    torch.manual_seed(0)
    lines = list(peoples_daily_lines(peoples_daily_tagged))[:LINES]
    corpus = write_lines(iter(lines), tmp_path / "pd.txt")
    build_vocab(iter(lines), tmp_path / "vocab.txt", vocab_size=3000)
    wor = tmp_path / "wor"
    make_wor_data(WorDataConfig(out=str(wor), vocab=str(tmp_path / "vocab.txt"), inputs=[str(corpus)],
                                max_tokens=SEQ - 2, dev_ratio=0.05, test_ratio=0.05, max_dev=40,
                                max_test=120))
    train, test = read_wor_jsonl(wor / "train.jsonl"), read_wor_jsonl(wor / "test.jsonl")
    assert len(test) == 120 and len(train) > 2000
    assert not {e.original for e in test} & {e.original for e in train}

    # A 2-layer PERT pre-trained with PerLM on the WOR train sentences only.
    prepare(PrepareConfig(out=str(tmp_path / "prep"), vocab=str(tmp_path / "vocab.txt"), lang="zh", workers=1,
                          inputs=[str(write_lines((e.original for e in train), tmp_path / "pretrain.txt"))]))
    tok = load_tokenizer(tmp_path / "vocab.txt")
    init = PertForPreTraining(BertConfig(vocab_size=len(tok), hidden_size=64, num_hidden_layers=2,
                                         num_attention_heads=2, intermediate_size=256,
                                         max_position_embeddings=SEQ))
    save_model_folder(init, tok, tmp_path / "init")
    summary = pretrain(PretrainConfig(data=str(tmp_path / "prep"), out=str(tmp_path / "pt"),
                                      init_from=str(tmp_path / "init"), max_seq_len=SEQ, batch_size=32,
                                      max_steps=PRETRAIN_STEPS, lr=2e-3, warmup_steps=8, eval_every=0,
                                      save_every=0, eval_sequences=16, num_workers=0, precision="fp32"))
    assert summary["steps"] == PRETRAIN_STEPS
    with safe_open(str(tmp_path / "pt" / "final" / "model.safetensors"), "pt") as f:
        assert "perlm_head.position_bias" in f.keys()  # fine-tuning starts from the pre-trained head
    t_pre = time.perf_counter() - t0

    run = tmp_path / "ft"
    finetune(FinetuneConfig(task="wor", model=str(tmp_path / "pt" / "final"), data=str(wor), out=str(run),
                            lr=1e-3, batch_size=32, max_seq_len=SEQ, max_steps=FINETUNE_STEPS,
                            eval_steps=FINETUNE_STEPS, eval_splits=["test"], warmup_ratio=0.1))
    metrics = json.loads((run / "seed-1" / "metrics.json").read_text("utf-8"))["test"]
    pred_file = run / "seed-1" / "predictions_test.jsonl"
    preds = [json.loads(line) for line in pred_file.read_text("utf-8").splitlines()]
    assert [p["id"] for p in preds] == [e.id for e in test]
    for e, p in zip(test, preds, strict=True):  # a true permutation of the input, no character lost or added
        assert Counter(p["prediction"]) == Counter(e.corrupted)
        assert p["correct"] == (p["prediction"] == e.original)

    # The harness's scores are pert.metrics.wor on the predictions (Chinese: tokens are characters here).
    def scores(predictions: list[str]) -> dict[str, float]:
        return wor_scores([tok.tokenize(e.corrupted) for e in test], [tok.tokenize(e.original) for e in test],
                          [tok.tokenize(x) for x in predictions])

    model_scores = scores([p["prediction"] for p in preds])
    for key in ("correction_f1", "detection_f1", "position_f1", "sentence_accuracy"):
        assert metrics[key] == pytest.approx(100 * model_scores[key])
    copy = scores([e.corrupted for e in test])
    negatives = sum(not e.moves for e in test) / len(test)
    assert copy["correction_f1"] == 0.0 and copy["sentence_accuracy"] == pytest.approx(negatives)

    # `pert restore` on held-out sentences gives exactly the fine-tuned model's predictions.
    best = run / "seed-1" / "best"
    assert main(["restore", "--model", str(best), "--input", str(wor / "test.jsonl"),
                 "--output", str(tmp_path / "restored.jsonl")]) == 0
    restored = [json.loads(line) for line in (tmp_path / "restored.jsonl").read_text("utf-8").splitlines()]
    assert [r["output"] for r in restored] == [p["prediction"] for p in preds]
    assert f"correction_f1 {metrics['correction_f1']:.2f}" in capsys.readouterr().out
    swapped = next(e for e in test if len(e.moves) == 1 and e.moves[0][1] - e.moves[0][0] <= 4)
    assert main(["restore", "--model", str(best), swapped.corrupted]) == 0
    assert capsys.readouterr().out == preds[test.index(swapped)]["prediction"] + "\n"

    print(f"\nWOR held-out test ({len(test)} sentences, {negatives:.0%} unchanged; "
          f"pre-training {t_pre:.0f} s, total {time.perf_counter() - t0:.0f} s)\n  model: "
          + ", ".join(f"{k} {v:.1f}" for k, v in metrics.items())
          + f"\n  copy the input: correction_f1 0.0, sentence_accuracy {100 * copy['sentence_accuracy']:.1f}")
