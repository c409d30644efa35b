"""From start/end logits of every window to one answer per question (n-best, max answer length, null).

A candidate span starts at a context token that has its maximum context in that window and ends at
a context token no earlier and at most ``max_answer_len`` tokens later; its score is start logit +
end logit. Only the ``n_best`` best starts and ends of each window are paired. The null score of a
question is the smallest [CLS] start+end score over its windows; ``null_odds`` = null score - best
span score, and SQuAD 2.0 answers "" when ``null_odds > null_threshold`` (Google BERT's convention,
and the direction of the official script's no-answer threshold).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pert.tasks.mrc_data import MrcExample


@dataclass
class MrcPrediction:
    """The answer to one question; ``start``/``end`` are characters of the context (-1 for no answer)."""

    text: str
    start: int
    end: int
    score: float
    """Probability of the chosen answer among the n-best (softmax of the span scores, null included)."""
    best_span: str
    """The best non-null span, whatever the null decision (what the threshold search needs)."""
    null_odds: float
    nbest: list[dict[str, Any]] = field(default_factory=list)


def _top(values: np.ndarray, mask: np.ndarray, k: int) -> np.ndarray:
    idx = np.flatnonzero(mask)
    if idx.size > k:
        idx = idx[np.argpartition(-values[idx], k - 1)[:k]]
    return idx


def _candidates(start: np.ndarray, end: np.ndarray, offsets: np.ndarray, maxc: np.ndarray, n_best: int,
                max_answer_len: int) -> list[tuple[float, float, float, int, int]]:
    n = len(offsets)
    start, end = start[:n], end[:n]
    in_ctx = offsets[:, 0] >= 0
    starts = _top(start, in_ctx & (maxc > 0), n_best)
    ends = _top(end, in_ctx, n_best)
    if starts.size == 0 or ends.size == 0:
        return []
    length = ends[None, :] - starts[:, None]
    ok = (length >= 0) & (length < max_answer_len)
    si, ej = np.nonzero(ok)
    return [(float(start[starts[a]] + end[ends[b]]), float(start[starts[a]]), float(end[ends[b]]),
             int(offsets[starts[a], 0]), int(offsets[ends[b], 1])) for a, b in zip(si, ej, strict=True)]


def postprocess(examples: Sequence[MrcExample], features: Sequence[dict[str, Any]],
                start_logits: Sequence[np.ndarray], end_logits: Sequence[np.ndarray], n_best: int = 20,
                max_answer_len: int = 30, null_threshold: float | None = None) -> list[MrcPrediction]:
    """One ``MrcPrediction`` per example; ``null_threshold=None`` never answers "" (SQuAD 1.1, CMRC, DRCD)."""
    by_example: list[list[int]] = [[] for _ in examples]
    for fi, feat in enumerate(features):
        by_example[feat["example_index"]].append(fi)
    out = []
    for ei, ex in enumerate(examples):
        cands: list[tuple[float, float, float, int, int]] = []
        null = math.inf
        for fi in by_example[ei]:
            s = np.asarray(start_logits[fi], dtype=np.float64)
            e = np.asarray(end_logits[fi], dtype=np.float64)
            null = min(null, float(s[0] + e[0]))
            offsets = np.asarray(features[fi]["offsets"]).reshape(-1, 2)
            maxc = np.asarray(features[fi]["max_context"])
            cands += _candidates(s, e, offsets, maxc, n_best, max_answer_len)
        cands.sort(key=lambda c: -c[0])
        cands = cands[:n_best]
        entries = [{"text": ex.context[a:b], "start": a, "end": b, "start_logit": sl, "end_logit": el,
                    "logit": sc} for sc, sl, el, a, b in cands]
        if null_threshold is not None and math.isfinite(null):
            entries.append({"text": "", "start": -1, "end": -1, "logit": null})
            entries.sort(key=lambda d: -d["logit"])
        if entries:
            logits = np.array([d["logit"] for d in entries])
            probs = np.exp(logits - logits.max())
            probs /= probs.sum()
            for d, p in zip(entries, probs, strict=True):
                d["probability"] = float(p)
        best = next((d for d in entries if d["start"] >= 0), None)
        null_odds = null - best["logit"] if best is not None else math.inf
        if best is None or (null_threshold is not None and null_odds > null_threshold):
            chosen = next((d for d in entries if d["start"] < 0), {"text": "", "start": -1, "end": -1,
                                                                   "probability": 0.0})
        else:
            chosen = best
        out.append(MrcPrediction(text=chosen["text"], start=chosen["start"], end=chosen["end"],
                                 score=chosen.get("probability", 0.0), best_span=best["text"] if best else "",
                                 null_odds=null_odds, nbest=entries))
    return out
