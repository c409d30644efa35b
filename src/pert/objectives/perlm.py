"""PerLM corruption: permute the selected whole-word units and label each with its token's new position."""

from __future__ import annotations

import numpy as np

from pert.objectives.config import ObjectiveConfig
from pert.objectives.select import select_units

SHUFFLED, KEPT = 1, 2  # kinds of a prediction; 0 pads


def derange_groups(group: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random derangement inside each group. ``group`` is non-decreasing, every group has >= 2
    members. Returns ``dest``: element i moves to index dest[i] (same group, dest[i] != i)."""
    n = len(group)
    dest = np.arange(n)
    redraw = np.zeros(int(group.max(initial=-1)) + 1, dtype=bool)
    e = dest.copy()  # the elements whose groups draw (again)
    while len(e):
        g = group[e]
        dest[e] = e[np.lexsort((rng.random(len(e)), g))]
        redraw[:] = False
        redraw[g[dest[e] == e]] = True  # groups with a fixed point draw again
        e = e[redraw[g]]
    return dest


def to_predictions(selected: np.ndarray, values: np.ndarray, cap: int, fill: int) -> np.ndarray:
    """Pack per-token values of the selected tokens of each row into (B, cap), left-aligned."""
    B, L = selected.shape
    out = np.full((B, cap), fill, dtype=np.int64)
    r, c = np.nonzero(selected)
    rank = np.cumsum(selected, axis=1)[r, c] - 1
    out[r, rank] = values[r, c]
    return out


def perlm_corrupt(ids: np.ndarray, word_start: np.ndarray, special: np.ndarray, rng: np.random.Generator,
                  cfg: ObjectiveConfig, cap: int | None = None, **_) -> dict[str, np.ndarray]:
    """Permute selected units of ``ids`` (B, L). Returns ``input_ids`` (permuted), ``positions`` (B, P;
    -1 pads), ``labels`` (B, P; -100 pads): for selected position i, the position j with
    input_ids[j] == ids[i]; ``kinds`` (B, P): 1 shuffled, 2 kept, 0 pad."""
    B, L = ids.shape
    cap = cap or cfg.predictions_cap(L)
    unit = select_units(word_start, special, rng, cfg.select_ratio, cfg.ngram_probs, cap)
    selected = unit >= 0
    flat_unit = unit.ravel()
    pos = np.flatnonzero(flat_unit >= 0)
    if cfg.scope == "global":
        # the paper: a random 90% of the selected tokens are shuffled among themselves across the sequence
        take = rng.random(len(pos)) < cfg.shuffle_ratio
        p, g = pos[take], pos[take] // L
    else:
        # span: 90% of the units are shuffled, each within itself
        uniq, uidx = np.unique(flat_unit[pos], return_inverse=True)
        take = (rng.random(len(uniq)) < cfg.shuffle_ratio)[uidx]
        p, g = pos[take], uidx[take]
    # A group of one token cannot move: it counts as kept.
    counts = np.bincount(g) if len(g) else np.zeros(0, np.int64)
    movable = counts[g] >= 2
    p, g = p[movable], g[movable]
    dest = p[derange_groups(g, rng)]

    permuted = ids.copy()
    permuted.ravel()[dest] = ids.ravel()[p]
    label = np.tile(np.arange(L), (B, 1))
    label.ravel()[p] = dest % L
    kind = np.full((B, L), KEPT, dtype=np.int64)
    kind.ravel()[p] = SHUFFLED
    return {
        "input_ids": permuted,
        "positions": to_predictions(selected, np.tile(np.arange(L), (B, 1)), cap, -1),
        "labels": to_predictions(selected, label, cap, -100),
        "kinds": to_predictions(selected, kind, cap, 0),
    }
