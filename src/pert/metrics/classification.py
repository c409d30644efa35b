"""Classification metrics: accuracy (most tasks), Matthews correlation (CoLA), F1 of the positive class (MRPC)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def _pair(gold: Sequence, pred: Sequence) -> tuple[np.ndarray, np.ndarray]:
    g, p = np.asarray(gold), np.asarray(pred)
    if g.shape != p.shape or g.ndim != 1:
        raise ValueError(f"gold and predictions must be equally long 1-d sequences, got {g.shape} and {p.shape}")
    if g.size == 0:
        raise ValueError("cannot score an empty set of examples")
    return g, p


def accuracy(gold: Sequence, pred: Sequence) -> float:
    """Fraction of predictions equal to the gold label."""
    g, p = _pair(gold, pred)
    return float((g == p).mean())


def binary_f1(gold: Sequence, pred: Sequence, positive: object = 1) -> float:
    """F1 of the ``positive`` class (GLUE's MRPC/QQP F1); 0 when there are no true positives."""
    g, p = _pair(gold, pred)
    tp = int(((g == positive) & (p == positive)).sum())
    fp = int(((g != positive) & (p == positive)).sum())
    fn = int(((g == positive) & (p != positive)).sum())
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def matthews_corrcoef(gold: Sequence, pred: Sequence) -> float:
    """Matthews correlation coefficient, multi-class form (Gorodkin's R_K); 0 when undefined."""
    g, p = _pair(gold, pred)
    classes, inv = np.unique(np.concatenate([g, p]), return_inverse=True)
    k = len(classes)
    cm = np.zeros((k, k), dtype=np.float64)
    np.add.at(cm, (inv[: g.size], inv[g.size:]), 1)
    t, pk = cm.sum(axis=1), cm.sum(axis=0)
    c, s = np.trace(cm), cm.sum()
    cov_pp = s * s - float(pk @ pk)
    cov_tt = s * s - float(t @ t)
    if cov_pp == 0 or cov_tt == 0:
        return 0.0
    return float((c * s - float(t @ pk)) / math.sqrt(cov_pp * cov_tt))
