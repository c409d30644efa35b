"""MRC readers on the real staged files, windows and offsets, span round trips, n-best decoding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pert.tasks import get_task
from pert.tasks.mrc_data import MrcExample, read_mrc_file, resolve_start
from pert.tasks.mrc_features import encode_examples, max_context, token_span, windows
from pert.tasks.mrc_postprocess import MrcPrediction, postprocess
from pert.text import load_tokenizer

CMRC = "zh/cmrc2018"
SQUAD1 = "en/squad1.1/dev-v1.1.json.zip"
SQUAD2 = "en/squad2.0-cs224n-split/dev-v2.0.json"


@pytest.fixture(scope="module")
def zh_tok(shared_data: Path):
    return load_tokenizer(shared_data / "vocab/bert-base-chinese/vocab.txt")


@pytest.fixture(scope="module")
def en_tok(shared_data: Path):
    return load_tokenizer(shared_data / "vocab/bert-base-uncased/vocab.txt")


# --- readers ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, counts", [
    # file, (articles, paragraphs, questions, answers, mismatched, repaired, unresolved, impossible)
    (f"{CMRC}/cmrc2018_train.json", (2403, 2403, 10142, 10142, 21, 21, 0, 0)),
    (f"{CMRC}/cmrc2018_dev.json", (848, 848, 3219, 9657, 200, 7, 193, 0)),
    (f"{CMRC}/cmrc2018_trial.json", (256, 256, 1002, 1002, 5, 5, 0, 0)),
    (SQUAD1, (48, 2067, 10570, 34726, 0, 0, 0, 0)),
    (SQUAD2, (16, 646, 6078, 10052, 0, 0, 0, 3168)),
])
def test_readers_match_sources_counts(shared_data: Path, name: str, counts: tuple[int, ...]) -> None:
    examples, s = read_mrc_file(shared_data / name)
    assert (s.articles, s.paragraphs, s.questions, s.answers, s.mismatched, s.repaired, s.unresolved,
            s.impossible) == counts
    assert len(examples) == s.questions
    for e in examples:  # every resolved start points at its text
        for text, start in zip(e.answers, e.starts, strict=True):
            assert start == -1 or e.context[start:start + len(text)] == text


def test_repair_of_shifted_offsets(shared_data: Path) -> None:
    examples, _ = read_mrc_file(shared_data / CMRC / "cmrc2018_train.json")
    by_id = {e.qid: e for e in examples}
    # official start 227 is one character late; "日本" occurs twice, only 226 is within the shift window
    e = by_id["TRAIN_2283_QUERY_1"]
    assert e.starts == [226] and e.context[226:228] == "日本"
    assert resolve_start("ab日本cd日本", "日本", 7) == 6  # near the given start
    assert resolve_start("日本abcdef日本", "日本", 4) == -1  # two occurrences, none near: unresolved
    assert resolve_start("abc", "x", 0) == -1


def test_task_drops_unresolved_answers_from_training_only(tmp_path: Path) -> None:
    data = {"data": [{"paragraphs": [{"context": "甲乙丙甲乙丙", "qas": [
        {"id": "ok", "question": "?", "answers": [{"text": "乙丙", "answer_start": 1}]},
        {"id": "bad", "question": "?", "answers": [{"text": "乙丙", "answer_start": 3}]}]}]}]}
    (tmp_path / "cmrc2018_train.json").write_text(json.dumps(data), encoding="utf-8")
    (tmp_path / "cmrc2018_dev.json").write_text(json.dumps(data), encoding="utf-8")
    task = get_task("cmrc2018")
    assert [e.qid for e in task.read(tmp_path, "train")] == ["ok"]
    assert [e.qid for e in task.read(tmp_path, "dev")] == ["ok", "bad"]
    assert task.read(tmp_path, "test") is None


@pytest.mark.parametrize("bad, message", [
    ({"data": [{"paragraphs": [{"qas": []}]}]}, "data[0].paragraphs[0]: missing field 'context'"),
    ({"data": [{"paragraphs": [{"context": "x", "qas": [{"id": "1", "answers": []}]}]}]},
     "data[0].paragraphs[0].qas[0]: missing field 'question'"),
    ({"data": [{"paragraphs": [{"context": "x", "qas": [
        {"id": "1", "question": "q", "answers": [{"text": "x", "answer_start": "0"}]}]}]}]},
     "qas[0].answers[0].answer_start: expected int, got str"),
    ({"data": [{"paragraphs": [{"context": "x", "qas": [{"id": "1", "question": "q", "answers": []},
                                                      {"id": "1", "question": "q", "answers": []}]}]}]},
     "duplicate question id '1'"),
])
def test_bad_files_name_the_field(tmp_path: Path, bad: dict, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad), encoding="utf-8")
    with pytest.raises(ValueError, match=str(path)) as err:
        read_mrc_file(path)
    assert message in str(err.value)
    (tmp_path / "broken.json").write_text('{"data": [', encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_mrc_file(tmp_path / "broken.json")


# --- windows and offsets ---------------------------------------------------------------------------

def test_windows_step_by_doc_stride_and_max_context() -> None:
    spans = windows(10, 4, 2)
    assert spans == [(0, 4), (2, 4), (4, 4), (6, 4)]
    best = max_context(spans, 10)
    # token 2: window 0 gives min(2, 1) context, window 1 min(0, 3) -> 0; token 3: min(3, 0) vs min(1, 2) -> 1
    assert best.tolist() == [0, 0, 0, 1, 1, 2, 2, 3, 3, 3]
    assert windows(3, 4, 2) == [(0, 3)]
    assert windows(0, 4, 2) == [(0, 0)]


def test_token_span() -> None:
    offsets = [(0, 2), (3, 5), (5, 6), (8, 10)]
    assert token_span(offsets, 3, 6) == (1, 2)
    assert token_span(offsets, 4, 5) == (1, 1)  # inside a token: the covering token
    assert token_span(offsets, 6, 8) is None  # whitespace only


def test_features_keep_original_text_for_spans(en_tok, zh_tok) -> None:
    ctx = "Café  Müller's \"NEW\" menu costs $3.50, or ¥20."
    ex = MrcExample("1", "What does the menu cost?", ctx, ["$3.50"], [ctx.index("$3.50")])
    f = encode_examples([ex], en_tok, 64, 16, 16)[0]
    a, b = f["offsets"][f["start_positions"]][0], f["offsets"][f["end_positions"]][1]
    assert ctx[a:b] == "$3.50"
    assert ctx[f["offsets"][f["start_positions"] - 1][0]:b] == "costs $3.50"  # original case and spacing
    assert f["token_type_ids"][:1] == [0] and f["token_type_ids"][-1] == 1
    zh = "《红楼梦》的作者是曹雪芹 (Cao Xueqin)。"
    ex = MrcExample("2", "作者是谁？", zh, ["曹雪芹 (Cao Xueqin)"], [zh.index("曹")])
    f = encode_examples([ex], zh_tok, 64, 16, 16)[0]
    a, b = f["offsets"][f["start_positions"]][0], f["offsets"][f["end_positions"]][1]
    assert zh[a:b] == "曹雪芹 (Cao Xueqin)"


def test_long_context_windows_and_question_truncation(en_tok) -> None:
    ctx = " ".join(f"w{i}" for i in range(300)) + " the answer is Zanzibar ."
    ex = MrcExample("1", "where " * 50, ctx, ["Zanzibar"], [ctx.index("Zanzibar")])
    feats = encode_examples([ex], en_tok, max_seq_len=64, doc_stride=20, max_query_len=10)
    assert len(feats) > 5 and all(len(f["input_ids"]) <= 64 for f in feats)
    assert all(f["input_ids"][1:11] == feats[0]["input_ids"][1:11] for f in feats)  # 10 question tokens
    hits = [f for f in feats if f["start_positions"]]
    assert hits and all(f["start_positions"] > 11 for f in hits)
    assert all(f["start_positions"] == 0 and f["end_positions"] == 0 for f in feats if f not in hits)
    with pytest.raises(ValueError, match="max_seq_len"):
        encode_examples([ex], en_tok, max_seq_len=12, doc_stride=20, max_query_len=10)


def _round_trip(examples: list[MrcExample], tokenizer, max_seq_len: int) -> tuple[int, list[str]]:
    """(answerable questions decoded exactly, ids of those that are not)."""
    feats = encode_examples(examples, tokenizer, max_seq_len, 128, 64)
    good, seen = set(), set()
    for f in feats:
        if not f["start_positions"]:
            continue
        e = examples[f["example_index"]]
        seen.add(f["example_index"])
        gold = next(t for t, s in zip(e.answers, e.starts, strict=True) if s >= 0 and t.strip()).strip()
        if e.context[f["offsets"][f["start_positions"]][0]:f["offsets"][f["end_positions"]][1]] == gold:
            good.add(f["example_index"])
    answerable = [i for i, e in enumerate(examples) if e.target() is not None]
    assert seen == set(answerable), "every answerable question has a window holding its answer"
    return len(good), sorted(examples[i].qid for i in set(answerable) - good)


def test_span_round_trip_cmrc2018(shared_data: Path, zh_tok) -> None:
    train, _ = read_mrc_file(shared_data / CMRC / "cmrc2018_train.json")
    dev, _ = read_mrc_file(shared_data / CMRC / "cmrc2018_dev.json")
    n, bad = _round_trip(train, zh_tok, 512)
    # the gold answer starts or ends inside a WordPiece ("984年" in "1984年", "1933年" after "～")
    assert (n, bad) == (10137, ["TRAIN_1107_QUERY_1", "TRAIN_1216_QUERY_3", "TRAIN_1243_QUERY_2",
                                "TRAIN_2521_QUERY_2", "TRAIN_3722_QUERY_4"])
    n, bad = _round_trip(dev, zh_tok, 512)
    assert (n, bad) == (3218, ["DEV_379_QUERY_2"])  # "4个" inside "34个"


def test_span_round_trip_squad1(shared_data: Path, en_tok) -> None:
    dev, _ = read_mrc_file(shared_data / SQUAD1)
    n, bad = _round_trip(dev, en_tok, 384)
    # annotators' spans inside words: "8" of "18", "gold" of "golden", "two" of "Westwood" ...
    assert n == 10538 and len(bad) == 32
    assert {"56be4db0acb8001400a502f0", "56be4e1facb8001400a502f9", "56bf738b3aeaaa14008c9655"} <= set(bad)


# --- n-best decoding -------------------------------------------------------------------------------

def _feature(n_question: int, offsets: list[tuple[int, int]], maxc: list[int] | None = None) -> dict:
    lead = [(-1, -1)] * (n_question + 2)
    return {"example_index": 0, "offsets": lead + offsets + [(-1, -1)],
            "max_context": [0] * len(lead) + (maxc or [1] * len(offsets)) + [0]}


def test_postprocess_picks_best_valid_span() -> None:
    ctx = "aa bb cc dd"
    ex = MrcExample("q", "?", ctx, [], [])
    feat = _feature(1, [(0, 2), (3, 5), (6, 8), (9, 11)])
    L = len(feat["offsets"])  # [CLS] q [SEP] aa bb cc dd [SEP]
    start, end = np.zeros(L), np.zeros(L)
    start[[4, 6]] = [5.0, 9.0]  # bb, dd
    end[[2, 5]] = [9.0, 6.0]  # the question's [SEP] (not context) and cc
    start_pad, end_pad = np.append(start, 0.0), np.append(end, 100.0)  # batch padding beyond the feature
    [p] = postprocess([ex], [feat], [start_pad], [end_pad], n_best=5, max_answer_len=30)
    # bb..cc = 11 beats dd..dd = 9; nothing may end at [SEP] or in the padding
    assert (p.text, p.start, p.end) == ("bb cc", 3, 8)
    assert 0 < p.score <= 1 and p.nbest[0]["text"] == "bb cc"
    assert sum(d["probability"] for d in p.nbest) == pytest.approx(1.0)
    [p] = postprocess([ex], [feat], [start], [end], n_best=5, max_answer_len=1)
    assert p.text == "dd"


def test_postprocess_max_context_and_null_threshold() -> None:
    ctx = "aa bb"
    ex = MrcExample("q", "?", ctx, [], [])
    # the best start ("aa") lacks max context in this window: "bb" wins
    feat = _feature(1, [(0, 2), (3, 5)], maxc=[0, 1])
    start = np.array([1.0, 0, 0, 8.0, 2.0, 0])
    end = np.array([1.0, 0, 0, 0.0, 3.0, 0])
    [p] = postprocess([ex], [feat], [start], [end])
    assert p.text == "bb" and p.null_odds == pytest.approx(2.0 - 5.0)
    [p] = postprocess([ex], [feat], [start], [end], null_threshold=-4.0)  # -3 > -4: no answer
    assert (p.text, p.start, p.end) == ("", -1, -1) and p.best_span == "bb"
    [p] = postprocess([ex], [feat], [start], [end], null_threshold=0.0)
    assert p.text == "bb"


# --- task metrics and prediction files -------------------------------------------------------------

def _pred(text: str, best_span: str, null_odds: float) -> MrcPrediction:
    return MrcPrediction(text=text, start=0 if text else -1, end=len(text) if text else -1, score=0.5,
                         best_span=best_span, null_odds=null_odds)


def test_squad2_task_metrics_and_files(tmp_path: Path) -> None:
    task = get_task("squad2")
    examples = [MrcExample("has", "?", "Paris is big", ["Paris"], [0]),
                MrcExample("no", "?", "Paris is big", [], [], impossible=True)]
    # at threshold 0 both are answered; the best threshold (-1.0) keeps "has" and drops "no"
    preds = [_pred("Paris", "Paris", -2.0), _pred("big", "big", -1.0)]
    m = task.compute_metrics(examples, preds)
    assert (m["em"], m["f1"], m["HasAns_exact"], m["NoAns_exact"]) == (50.0, 50.0, 100.0, 0.0)
    assert (m["best_f1"], m["best_f1_thresh"]) == (100.0, -2.0)
    assert task.main_metric == "best_f1"
    task.save_predictions(examples, preds, tmp_path / "predictions_dev.jsonl")
    assert json.loads((tmp_path / "predictions_dev.json").read_text()) == {"has": "Paris", "no": "big"}
    assert json.loads((tmp_path / "null_odds_dev.json").read_text()) == {"has": -2.0, "no": -1.0}
    assert json.loads((tmp_path / "predictions_nonnull_dev.json").read_text()) == {"has": "Paris", "no": "big"}
    rows = [json.loads(x) for x in (tmp_path / "predictions_dev.jsonl").read_text().splitlines()]
    assert rows[0]["id"] == "has" and rows[0]["answer"] == "Paris"


def test_cmrc_task_metrics() -> None:
    task = get_task("cmrc2018")
    examples = [MrcExample("a", "?", "北京是首都", ["北京", "北京市"], [0, -1]),
                MrcExample("b", "?", "上海很大", ["上海"], [0])]
    m = task.compute_metrics(examples, [_pred("北京", "北京", 0), _pred("上海很大", "上海很大", 0)])
    assert m["em"] == 50.0 and m["f1"] == pytest.approx(100 * (1 + 2 / 3) / 2) and m["total"] == 2


def test_drcd_by_format_and_squad2_unanswerable_features(tmp_path: Path, shared_data: Path, en_tok) -> None:
    drcd = {"version": "1.3", "data": [{"id": "1001", "title": "梵文", "paragraphs": [
        {"id": "1001-1", "context": "廣義的梵語在文獻學上包括佛教混合梵語。", "qas": [
            {"id": "1001-1-1", "question": "廣義的梵語包括什麼？",
             "answers": [{"id": "1", "text": "佛教混合梵語", "answer_start": 12}]}]}]}]}
    (tmp_path / "DRCD_dev.json").write_text(json.dumps(drcd, ensure_ascii=False), encoding="utf-8")
    [e] = get_task("drcd").read(tmp_path, "dev")
    assert (e.qid, e.context[e.starts[0]:e.starts[0] + 6]) == ("1001-1-1", "佛教混合梵語")
    with pytest.raises(ValueError, match="use task squad2"):
        get_task("squad1", ["dev_file=" + str(shared_data / SQUAD2)]).read(tmp_path, "dev")
    examples = get_task("squad2").read(shared_data / "en/squad2.0-cs224n-split", "dev")[:60]
    feats = encode_examples(examples, en_tok, 384, 128, 64)
    assert all(f["start_positions"] == 0 for f in feats if examples[f["example_index"]].impossible)
    assert any(f["start_positions"] > 0 for f in feats)


def test_rows_that_cannot_be_scored_are_reported(tmp_path: Path, caplog) -> None:
    import logging

    data = {"data": [{"paragraphs": [{"context": "甲乙丙甲乙丙", "qas": [
        {"id": "ok", "question": "?", "answers": [{"text": "乙丙", "answer_start": 1}]},
        {"id": "none", "question": "?", "answers": []}]}]}]}
    (tmp_path / "cmrc2018_dev.json").write_text(json.dumps(data), encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        assert [e.qid for e in get_task("cmrc2018").read(tmp_path, "dev")] == ["ok", "none"]
    assert f"{tmp_path / 'cmrc2018_dev.json'}: 1 questions have no gold answer and score 0 whatever the answer " \
           "(as in the official script): none" in caplog.text
    caplog.clear()
    (tmp_path / "dev.tsv").write_text("label\ttext_a\n1\t好\n0\t\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        assert [e.text_a for e in get_task("chnsenticorp").read(tmp_path, "dev")] == ["好", ""]
    assert "dev.tsv: 1 rows have an empty text field (lines 3)" in caplog.text


def test_long_contexts_give_no_indexing_warning(minilm_dir, caplog) -> None:
    import logging

    tok = load_tokenizer(minilm_dir)
    assert tok.model_max_length == 512
    with caplog.at_level(logging.WARNING):
        assert len(tok("word " * 800)["input_ids"]) == 802  # pert windows it; transformers need not warn
    assert "longer than the specified maximum" not in caplog.text
