"""Word-order restoration metrics (defined in docs/wor.md; the PERT paper does not spell them out).

Each sentence has a source (the corrupted input), a target (the original) and a prediction, all token
sequences (a string counts as a sequence of characters). A sentence is *positive* when its source differs
from its target, *predicted positive* when the prediction differs from the source. Following Chinese
spelling-correction evaluation (SIGHAN):

- detection: a predicted-positive sentence is a hit when the set of positions it changed equals the set of
  positions the target changes (its "where", not its "what");
- correction: a predicted-positive sentence is a hit when the whole prediction equals the target;
- precision = hits / predicted-positive sentences, recall = hits / positive sentences, F1 their harmonic
  mean (0 when both are 0);
- position: over tokens, a changed position (prediction differs from source) is a hit when the prediction
  there equals the target; precision = hits / changed positions, recall = hits / positions the target
  changes (tokens that were moved, counted by the surface token so equal tokens are interchangeable);
- sentence accuracy: share of all sentences whose prediction equals the target (copying the input scores
  the share of negatives here and 0 on every P/R/F above).

Returns fractions in [0, 1] and the counts behind them.
"""

from __future__ import annotations

from collections.abc import Sequence


def _changed(a: Sequence, b: Sequence) -> set[int]:
    n = max(len(a), len(b))
    return {i for i in range(n) if i >= len(a) or i >= len(b) or a[i] != b[i]}


def _prf(hits: int, predicted: int, gold: int) -> tuple[float, float, float]:
    p = hits / predicted if predicted else 0.0
    r = hits / gold if gold else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def wor_scores(sources: Sequence[Sequence], targets: Sequence[Sequence],
               predictions: Sequence[Sequence]) -> dict[str, float]:
    """Sentence-level detection/correction and token-level position P/R/F1, plus sentence accuracy."""
    if not len(sources) == len(targets) == len(predictions):
        raise ValueError(f"sources ({len(sources)}), targets ({len(targets)}) and predictions "
                         f"({len(predictions)}) must be equally many")
    if not sources:
        raise ValueError("cannot score an empty set of sentences")
    positive = predicted = det_hits = cor_hits = exact = 0
    pos_gold = pos_pred = pos_hits = 0
    for src, tgt, pred in zip(sources, targets, predictions, strict=True):
        src, tgt, pred = list(src), list(tgt), list(pred)
        gold_changed = _changed(src, tgt)
        pred_changed = _changed(src, pred)
        exact += pred == tgt
        positive += bool(gold_changed)
        if pred_changed:
            predicted += 1
            det_hits += bool(gold_changed) and pred_changed == gold_changed
            cor_hits += bool(gold_changed) and pred == tgt
        pos_gold += len(gold_changed)
        pos_pred += len(pred_changed)
        pos_hits += sum(1 for i in pred_changed & gold_changed
                        if i < len(pred) and i < len(tgt) and pred[i] == tgt[i])
    out: dict[str, float] = {}
    for name, hits, pred_n, gold_n in (("detection", det_hits, predicted, positive),
                                       ("correction", cor_hits, predicted, positive),
                                       ("position", pos_hits, pos_pred, pos_gold)):
        p, r, f = _prf(hits, pred_n, gold_n)
        out.update({f"{name}_precision": p, f"{name}_recall": r, f"{name}_f1": f})
    out.update({"sentence_accuracy": exact / len(sources), "sentences": len(sources), "positive": positive,
                "predicted_positive": predicted, "moved_tokens": pos_gold, "changed_tokens": pos_pred})
    return out
