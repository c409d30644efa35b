"""SQuAD 1.1 and 2.0 EM/F1 with the semantics of the official evaluation scripts.

Normalisation (both versions): lower-case, drop ``string.punctuation``, drop the articles a/an/the
as whole words, collapse whitespace. F1 is bag-of-tokens overlap; both take the maximum over the
gold answers.

Version differences kept here: 2.0 ignores gold answers that normalise to nothing and scores a
question left without gold answers against ``""``; its F1 of two empty token lists is 1. A question
is HasAns when its answer list is not empty (``bool(answers)``, as evaluate-v2.0.py), even if every
answer normalises to nothing. 2.0 also reports HasAns/NoAns splits and, given no-answer
probabilities, the best null threshold (``find_best_threshold``, the official ``find_best_thresh``):
questions are taken in increasing probability, ties in the order of ``na_probs`` (the order of the
official ``--na-prob-file``), so the result is the official script's also where ties make it a score
no single threshold reaches.

A question without a prediction scores 0 and counts in the total in both versions (the 1.1 script
does this; the 2.0 script requires every prediction), and is counted in ``missing``.
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Mapping, Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = frozenset(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace (official normalisation)."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def exact_match(gold: str, prediction: str) -> float:
    return float(normalize_answer(gold) == normalize_answer(prediction))


def f1(gold: str, prediction: str, version: str = "2.0") -> float:
    """Token-overlap F1 (0-1) of one prediction against one gold answer."""
    gold_toks = normalize_answer(gold).split()
    pred_toks = normalize_answer(prediction).split()
    if version != "1.1" and (not gold_toks or not pred_toks):
        return float(gold_toks == pred_toks)
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_toks), same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def _golds(answers: Sequence[str], version: str) -> list[str]:
    if version == "1.1":
        return list(answers)
    return [a for a in answers if normalize_answer(a)] or [""]


def raw_scores(gold: Mapping[str, Sequence[str]], predictions: Mapping[str, str],
               version: str = "2.0") -> tuple[dict[str, float], dict[str, float]]:
    """Per-question (exact, f1) in 0-1, for the questions that have a prediction."""
    exact, f1s = {}, {}
    for qid, answers in gold.items():
        if qid not in predictions:
            continue
        golds, pred = _golds(answers, version), predictions[qid]
        exact[qid] = max((exact_match(a, pred) for a in golds), default=0.0)
        f1s[qid] = max((f1(a, pred, version) for a in golds), default=0.0)
    return exact, f1s


def evaluate_v1(gold: Mapping[str, Sequence[str]], predictions: Mapping[str, str]) -> dict[str, float]:
    """Official SQuAD 1.1: ``{"exact_match", "f1", "total", "missing"}`` in percent."""
    exact, f1s = raw_scores(gold, predictions, "1.1")
    total = len(gold)
    return {"exact_match": 100.0 * sum(exact.values()) / total if total else 0.0,
            "f1": 100.0 * sum(f1s.values()) / total if total else 0.0,
            "total": total, "missing": total - len(exact)}


def find_best_threshold(predictions: Mapping[str, str], scores: Mapping[str, float],
                        na_probs: Mapping[str, float], has_ans: Mapping[str, bool],
                        total: int | None = None) -> tuple[float, float]:
    """(best score in percent, threshold): predict "" when ``na_probs[qid] > threshold`` (official semantics).

    ``scores`` holds the questions with a prediction; questions are visited in increasing ``na_probs``,
    ties in the mapping's order, as the official script does. ``total`` (default: their number) is
    the denominator.
    """
    cur = best = sum(1 for q in scores if not has_ans[q])
    threshold = 0.0
    for qid in sorted(na_probs, key=lambda k: na_probs[k]):
        if qid not in scores:
            continue
        if has_ans[qid]:
            cur += scores[qid]
        elif predictions[qid]:
            cur -= 1
        if cur > best:
            best, threshold = cur, na_probs[qid]
    total = len(scores) if total is None else total
    return 100.0 * best / total if total else 0.0, threshold


def evaluate_v2(gold: Mapping[str, Sequence[str]], predictions: Mapping[str, str],
                na_probs: Mapping[str, float] | None = None,
                na_prob_threshold: float = 1.0) -> dict[str, float]:
    """Official SQuAD 2.0: exact, f1, total, HasAns_*/NoAns_* splits, ``missing``, and with ``na_probs``
    the ``best_exact``/``best_f1`` with their thresholds (chosen on the data scored).

    ``na_probs`` must name every predicted question; its order breaks ties as the official
    ``--na-prob-file`` does.
    """
    has_ans = {qid: bool(answers) for qid, answers in gold.items()}
    exact, f1s = raw_scores(gold, predictions, "2.0")
    if na_probs is None:
        probs = dict.fromkeys(exact, 0.0)
    else:
        lacking = [q for q in exact if q not in na_probs]
        if lacking:
            raise ValueError(f"no null probability for {len(lacking)} predicted questions, e.g. {lacking[0]!r}")
        probs = {q: float(p) for q, p in na_probs.items() if q in exact}

    def thresholded(scores: dict[str, float]) -> dict[str, float]:
        return {q: float(not has_ans[q]) if probs[q] > na_prob_threshold else s for q, s in scores.items()}

    ex, fs = thresholded(exact), thresholded(f1s)
    out: dict[str, float] = {}

    def block(prefix: str, qids: list[str]) -> None:
        n = len(qids)
        out[f"{prefix}exact"] = 100.0 * sum(ex.get(q, 0.0) for q in qids) / n if n else 0.0
        out[f"{prefix}f1"] = 100.0 * sum(fs.get(q, 0.0) for q in qids) / n if n else 0.0
        out[f"{prefix}total"] = n

    block("", list(gold))
    has = [q for q in gold if has_ans[q]]
    no = [q for q in gold if not has_ans[q]]
    if has:
        block("HasAns_", has)
    if no:
        block("NoAns_", no)
    out["missing"] = len(gold) - len(exact)
    if na_probs is not None and exact:
        preds = {q: predictions[q] for q in exact}
        n = len(gold)
        out["best_exact"], out["best_exact_thresh"] = find_best_threshold(preds, exact, probs, has_ans, n)
        out["best_f1"], out["best_f1_thresh"] = find_best_threshold(preds, f1s, probs, has_ans, n)
    return out
