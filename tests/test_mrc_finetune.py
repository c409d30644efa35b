"""End to end: fine-tune the real MiniLM BERT on part of SQuAD 1.1 dev, score the held-apart rest, export.

The split is by article (every 4th article is held apart), so no paragraph is seen in training. To
keep the test CI-sized, training uses paragraphs of at most 80 words and a 128-token window; the
held-apart questions keep their full paragraphs (several windows each).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

STEPS, BATCH, MAX_SEQ_LEN, EVAL_QUESTIONS = 160, 8, 128, 100
TASK_ARGS = ["doc_stride=64", "max_query_len=24"]
MARGIN_F1, MARGIN_EM = 10.0, 10.0


def _split(squad_zip: Path, out: Path) -> Path:
    data = json.loads(zipfile.ZipFile(squad_zip).read("dev-v1.1.json"))["data"]
    train, held = [], []
    for i, article in enumerate(data):
        if i % 4 != 3:
            paras = [p for p in article["paragraphs"] if len(p["context"].split()) <= 80]
            train.append({"title": article["title"], "paragraphs": paras})
        else:  # one question from every 5th paragraph: spread over the held-apart articles
            paras = [dict(p, qas=p["qas"][:1]) for k, p in enumerate(article["paragraphs"]) if k % 5 == 0]
            held.append({"title": article["title"], "paragraphs": paras})
    out.mkdir(parents=True)
    (out / "train-v1.1.json").write_text(json.dumps({"version": "1.1", "data": train}), encoding="utf-8")
    (out / "dev-v1.1.json").write_text(json.dumps({"version": "1.1", "data": held}), encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, shared_data: Path, minilm_dir: Path) -> dict[str, Any]:
    from pert.tasks import FinetuneConfig, finetune

    tmp = tmp_path_factory.mktemp("squad")
    data = _split(shared_data / "en/squad1.1/dev-v1.1.json.zip", tmp / "data")
    cfg = FinetuneConfig(task="squad1", model=str(minilm_dir), data=str(data), out=str(tmp / "run"), seeds=[1],
                         max_seq_len=MAX_SEQ_LEN, batch_size=BATCH, eval_batch_size=64, lr=3e-4, max_steps=STEPS,
                         max_train_examples=STEPS * BATCH, max_eval_examples=EVAL_QUESTIONS, splits=["dev"],
                         eval_every=STEPS, task_args=TASK_ARGS)
    result = finetune(cfg)
    return {"data": data, "out": tmp / "run", "best": tmp / "run" / "seed-1" / "best",
            "dev": result["seeds"][0]["dev"]}


def _held_apart(run: dict[str, Any]) -> list:
    from pert.tasks.mrc_data import read_mrc_file

    return read_mrc_file(run["data"] / "dev-v1.1.json")[0][:EVAL_QUESTIONS]


def test_finetuned_model_beats_trivial_baselines(run: dict[str, Any], minilm_dir: Path) -> None:
    from pert.metrics.squad import evaluate_v1
    from pert.tasks import get_task
    from pert.tasks.loop import score
    from pert.text import load_tokenizer

    examples = _held_apart(run)
    gold = {e.qid: e.answers for e in examples}
    # first k words of the paragraph, k = 1..5 (SQuAD answers average about 3 words)
    first_words = [evaluate_v1(gold, {e.qid: " ".join(e.context.split()[:k]) for e in examples})
                   for k in (1, 2, 3, 4, 5)]
    task = get_task("squad1", TASK_ARGS)
    torch.manual_seed(0)
    model, tok = task.build_model(minilm_dir), load_tokenizer(minilm_dir)  # same pipeline, random QA head
    untrained, _ = score(task, model, tok, examples, task.encode(examples, tok, MAX_SEQ_LEN), 64,
                         torch.device("cpu"))
    dev = run["dev"]
    print(f"held-apart SQuAD 1.1, {len(examples)} questions: fine-tuned EM {dev['em']:.1f} F1 {dev['f1']:.1f}; "
          f"untrained head EM {untrained['em']:.1f} F1 {untrained['f1']:.1f}; first-k-words best EM "
          f"{max(r['exact_match'] for r in first_words):.1f} F1 {max(r['f1'] for r in first_words):.1f}")
    assert dev["total"] == len(examples) == EVAL_QUESTIONS
    assert dev["f1"] > max(untrained["f1"], *(r["f1"] for r in first_words)) + MARGIN_F1
    assert dev["em"] > max(untrained["em"], *(r["exact_match"] for r in first_words)) + MARGIN_EM


def test_export_loads_in_plain_transformers_with_identical_logits(run: dict[str, Any]) -> None:
    from transformers import AutoModelForQuestionAnswering, BertForQuestionAnswering

    from pert.tasks.base import load_model_with_head
    from pert.text import load_tokenizer

    plain, info = AutoModelForQuestionAnswering.from_pretrained(str(run["best"]), output_loading_info=True)
    assert isinstance(plain, BertForQuestionAnswering)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    ours = load_model_with_head(BertForQuestionAnswering, run["best"])
    tok = load_tokenizer(run["best"])
    batch = tok(["Who won?"], ["The Denver Broncos won Super Bowl 50 in 2016."], return_tensors="pt")
    with torch.no_grad():
        a, b = plain.eval()(**batch), ours.eval()(**batch)
    assert torch.equal(a.start_logits, b.start_logits) and torch.equal(a.end_logits, b.end_logits)


def test_pert_qa_file_reproduces_the_training_predictions(run: dict[str, Any], tmp_path: Path) -> None:
    from pert.cli import main

    examples = _held_apart(run)
    subset = {"data": [{"paragraphs": [{"context": e.context, "qas": [
        {"id": e.qid, "question": e.question,
         "answers": [{"text": t, "answer_start": s} for t, s in zip(e.answers, e.starts, strict=True)]}]}]}
        for e in examples]}
    (tmp_path / "in.json").write_text(json.dumps(subset), encoding="utf-8")
    assert main(["qa", "--model", str(run["best"]), "--input", str(tmp_path / "in.json"), "--output",
                 str(tmp_path / "pred.json"), "--max-seq-len", str(MAX_SEQ_LEN), "--doc-stride", "64",
                 "--max-query-len", "24"]) == 0
    ours = json.loads((tmp_path / "pred.json").read_text(encoding="utf-8"))
    harness = json.loads((run["out"] / "seed-1" / "predictions_dev.json").read_text(encoding="utf-8"))
    assert ours == harness  # the exported folder answers exactly as the model in memory did


def test_answer_function_and_single_question_cli(run: dict[str, Any], capsys) -> None:
    from pert.cli import main
    from pert.qa import answer

    filler = " ".join(["The weather in the valley was mild that year."] * 30)
    context = f"{filler} The Denver Broncos defeated the Carolina Panthers 24–10 to win Super Bowl 50. {filler}"
    pairs = [("Which team won Super Bowl 50?", context), ("Who lost Super Bowl 50?", context)]
    answers = answer(run["best"], pairs, max_seq_len=MAX_SEQ_LEN, doc_stride=64)
    assert len(answers) == 2
    for a in answers:
        assert a.text and context[a.start:a.end] == a.text and 0 < a.score <= 1
    assert main(["qa", "--model", str(run["best"]), "--context", context, "--question", pairs[0][0],
                 "--max-seq-len", str(MAX_SEQ_LEN)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert context[out["start"]:out["end"]] == out["text"] and out["text"]
