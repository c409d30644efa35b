"""CMRC 2018 and SQuAD metrics on hand-computed cases (the official scripts' semantics)."""

from __future__ import annotations

import json

import pytest

from pert.metrics import cmrc2018, squad

# --- CMRC 2018 / DRCD --------------------------------------------------------------------------


def test_mixed_segmentation_splits_cjk_characters_and_nltk_words() -> None:
    assert cmrc2018.mixed_segmentation("Hello世界, Mr. Smith's") == ["hello", "世", "界", ",", "mr.", "smith", "'s"]
    assert cmrc2018.mixed_segmentation("iPhone 6手机") == ["iphone", "6", "手", "机"]


def test_listed_punctuation_is_a_segment_or_dropped_without_ending_a_run() -> None:
    assert cmrc2018.mixed_segmentation("2018-2019年") == ["2018", "-", "2019", "年"]
    # removed characters do not split the run around them, exactly as the official loop `continue`s
    assert cmrc2018.mixed_segmentation("2018-2019年", remove_punctuation=True) == ["20182019", "年"]
    assert cmrc2018.mixed_segmentation("《红楼梦》", remove_punctuation=True) == ["红", "楼", "梦"]
    # ASCII quotes are not in the list: NLTK turns them into `` and ''
    assert cmrc2018.mixed_segmentation('他说："OK"。', remove_punctuation=True) == ["他", "说", "``", "ok", "''"]


def test_nltk_word_tokenize_splits_punkt_sentences_first() -> None:
    # Punkt ends a sentence at "no." (not an English abbreviation), so "No. 1" is three segments
    assert cmrc2018.mixed_segmentation("No. 1") == ["no", ".", "1"]
    assert cmrc2018.mixed_segmentation("5. 6.") == ["5", ".", "6", "."]
    assert cmrc2018.mixed_segmentation("Mr. Smith left. He") == ["mr.", "smith", "left", ".", "he"]
    assert cmrc2018.f1_score(["1個"], "No. 1") == pytest.approx(0.4)  # P 1/3, R 1/2
    assert cmrc2018.f1_score(["5"], "5. 6.") == pytest.approx(0.4)  # P 1/4, R 1
    assert cmrc2018.em_score(["5. 6."], "5. 6.") == 1.0


def test_f1_uses_longest_common_contiguous_run_not_bag_of_tokens() -> None:
    # same four characters, but the longest shared run is 2: P = R = 2/4
    assert cmrc2018.f1_score(["北京大学"], "大学北京") == pytest.approx(0.5)
    # mixed Chinese/English: run [iphone, 6] of 4 gold segments: P = 1, R = 1/2
    assert cmrc2018.f1_score(["iPhone 6手机"], "iphone 6") == pytest.approx(2 / 3)
    assert cmrc2018.f1_score(["北京"], "上海") == 0.0
    assert cmrc2018.f1_score([], "上海") == 0.0


def test_em_ignores_case_surrounding_space_and_full_width_punctuation() -> None:
    assert cmrc2018.em_score(["《红楼梦》"], "红楼梦") == 1.0
    assert cmrc2018.em_score(["ABC "], "abc") == 1.0
    assert cmrc2018.em_score(["第一，第二。"], "第一第二") == 1.0
    # "……" in the official list is two characters and never matches one: "…" stays
    assert cmrc2018.em_score(["等等……"], "等等") == 0.0
    assert cmrc2018.f1_score(["等等……"], "等等") == pytest.approx(0.8)  # P = 2/2, R = 2/3


def test_several_gold_answers_take_the_maximum() -> None:
    answers = ["北京", "北京市", "中国北京"]
    assert cmrc2018.em_score(answers, "北京市") == 1.0
    assert cmrc2018.f1_score(answers, "北京市") == 1.0
    # best is "中国北京" vs "在中国北京": run of 4 -> P 4/5, R 1
    assert cmrc2018.f1_score(answers, "在中国北京") == pytest.approx(2 * 0.8 / 1.8)


def test_evaluate_counts_unanswered_questions_as_zero() -> None:
    gold = {"q1": ["北京"], "q2": ["上海"], "q3": ["长江"]}
    r = cmrc2018.evaluate(gold, {"q1": "北京", "q2": "上海市"})
    assert r["total"] == 3 and r["skip"] == 1
    assert r["em"] == pytest.approx(100 / 3)
    assert r["f1"] == pytest.approx(100 * (1 + 0.8) / 3)  # 上海 vs 上海市: P 2/3, R 1
    assert r["average"] == pytest.approx((r["em"] + r["f1"]) / 2)


def test_command_line_prints_the_official_summary(tmp_path, capsys) -> None:
    data = {"data": [{"paragraphs": [{"context": "北京是首都", "qas": [
        {"id": " Q1 ", "question": "首都?", "answers": [{"text": "北京", "answer_start": 0}]}]}]}]}
    (tmp_path / "d.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "p.json").write_text(json.dumps({"Q1": "北京"}), encoding="utf-8")
    assert cmrc2018.main([str(tmp_path / "d.json"), str(tmp_path / "p.json")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["EM"] == "100.000" and out["F1"] == "100.000" and out["TOTAL"] == 1 and out["SKIP"] == 0


# --- SQuAD ---------------------------------------------------------------------------------------


def test_squad_normalisation() -> None:
    assert squad.normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert squad.normalize_answer("an apple, a day") == "apple day"
    assert squad.normalize_answer("theatre") == "theatre"  # articles only as whole words


def test_squad_f1_is_bag_of_tokens() -> None:
    assert squad.f1("the cat sat", "a cat sat down") == pytest.approx(0.8)  # P 2/3, R 1
    assert squad.f1("cat sat", "sat cat") == 1.0
    assert squad.f1("cat", "dog") == 0.0


def test_squad_v1_evaluate_with_several_answers_and_a_missing_prediction() -> None:
    gold = {"a": ["Denver Broncos", "Broncos"], "b": ["Santa Clara, California"], "c": ["1990"]}
    r = squad.evaluate_v1(gold, {"a": "the Broncos", "b": "Santa Clara"})
    assert r["total"] == 3 and r["missing"] == 1
    assert r["exact_match"] == pytest.approx(100 / 3)
    assert r["f1"] == pytest.approx(100 * (1 + 0.8) / 3)  # santa clara vs santa clara california


def test_squad_v2_empty_answers_and_splits() -> None:
    # "a" normalises to nothing: scored against "", but HasAns all the same (bool(answers), as evaluate-v2.0.py)
    gold = {"has1": ["Paris"], "has2": ["in 1990"], "no1": [], "has3": ["a"]}
    preds = {"has1": "Paris", "has2": "", "no1": "", "has3": "London"}
    r = squad.evaluate_v2(gold, preds)
    assert r["total"] == 4 and r["HasAns_total"] == 3 and r["NoAns_total"] == 1
    assert r["exact"] == 50.0 and r["f1"] == 50.0
    assert r["HasAns_exact"] == pytest.approx(100 / 3) and r["NoAns_exact"] == 100.0
    assert squad.evaluate_v2(gold, {**preds, "has3": ""})["HasAns_exact"] == pytest.approx(200 / 3)
    assert squad.f1("", "") == 1.0 and squad.f1("", "x") == 0.0
    assert squad.f1("", "", version="1.1") == 0.0


def test_squad_v2_best_null_threshold() -> None:
    gold = {"q1": ["cat"], "q2": [], "q3": ["dog"]}
    preds = {"q1": "cat", "q2": "bird", "q3": "fish"}
    na = {"q1": 0.1, "q2": 0.9, "q3": 0.5}
    r = squad.evaluate_v2(gold, preds, na_probs=na)
    # threshold 0.1: q1 answered (right), q3 and q2 answered "" -> q2 right: 2 of 3
    assert r["best_exact"] == pytest.approx(200 / 3) and r["best_exact_thresh"] == 0.1
    assert r["best_f1"] == pytest.approx(200 / 3) and r["best_f1_thresh"] == 0.1
    # applying a threshold to the raw scores: everything above 0.4 becomes "no answer"
    r = squad.evaluate_v2(gold, preds, na_probs=na, na_prob_threshold=0.4)
    assert r["exact"] == pytest.approx(200 / 3)
