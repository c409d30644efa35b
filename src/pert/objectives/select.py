"""Whole-word N-gram selection, vectorised over a batch.

The spec's procedure walks the words in random order, draws n in 1..4 at each start and takes the next
n whole words as a unit unless it overlaps an earlier unit, until 15% of the real tokens are selected.
The vectorised equivalent used here: tile each sequence's words into consecutive units whose lengths are
drawn i.i.d. from the N-gram distribution (so units never overlap and have exactly that length
distribution, cut only at special tokens), then take whole units in random order while they fit the
budget. Units never cross a special token and never split a word; a word fragment cut by the sequence
boundary counts as a word.
"""

from __future__ import annotations

import numpy as np


def _row_shift(a: np.ndarray, fill) -> np.ndarray:
    out = np.empty_like(a)
    out[:, 0] = fill
    out[:, 1:] = a[:, :-1]
    return out


def select_units(word_start: np.ndarray, special: np.ndarray, rng: np.random.Generator,
                 ratio: float, ngram_probs: list[float], cap: int) -> np.ndarray:
    """Pick whole-word N-gram units. Returns (B, L) int64: a unit id for selected tokens, -1 elsewhere.

    Unit ids are numbered 0.. in flat (row, position) order, so tokens of one unit are contiguous and
    ids increase along a row. ``word_start`` is true at the first piece of each word; ``special`` marks
    [CLS]/[SEP]/[PAD], which are never selected.
    """
    B, L = word_start.shape
    real = ~special
    # a real token right after a special one starts a word: a word cut by the sequence boundary (a fragment
    # without its first piece) is a word of its own, so no unit exceeds the largest N-gram's words
    ws = (word_start | _row_shift(special, True)) & real
    word_idx = np.cumsum(ws, axis=1) - 1
    W = max(int(ws.sum(1).max(initial=0)), 1)

    # Random tiling of each row's words into units of 1..n words.
    sizes = np.arange(1, len(ngram_probs) + 1)
    ends = np.cumsum(rng.choice(sizes, size=(B, W), p=ngram_probs), axis=1)
    starts = np.zeros((B, W + 1), dtype=np.int64)
    r, c = np.nonzero(ends < W)
    starts[r, ends[r, c]] = 1
    unit_of_word = np.cumsum(starts[:, :W], axis=1)
    unit_local = np.take_along_axis(unit_of_word, np.maximum(word_idx, 0), axis=1)

    # A new unit starts where the tiling says so or after a special token.
    segment = np.cumsum(special, axis=1) - special
    new_unit = real & ((unit_local != _row_shift(unit_local, -1)) | (segment != _row_shift(segment, -1))
                       | _row_shift(special, True))
    unit = np.cumsum(new_unit.ravel()) - 1
    unit = np.where(real.ravel(), unit, -1)
    n_units = int(new_unit.sum())
    if n_units == 0:
        return unit.reshape(B, L)
    length = np.bincount(unit[unit >= 0], minlength=n_units)
    row = np.flatnonzero(new_unit.ravel()) // L

    # Take units in random order while they fit the budget (three vectorised greedy passes).
    budget = np.minimum(cap, np.maximum(1, np.rint(ratio * real.sum(1)))).astype(np.int64)
    budget[real.sum(1) == 0] = 0
    order = np.lexsort((rng.random(n_units), row))
    row_s, len_s = row[order], length[order]
    first = np.searchsorted(row_s, np.arange(B))
    taken = np.zeros(n_units, dtype=bool)
    for _ in range(3):
        left = budget - np.bincount(row_s[taken], weights=len_s[taken], minlength=B).astype(np.int64)
        cand = ~taken & (len_s <= left[row_s])
        cs = np.cumsum(np.where(cand, len_s, 0))
        before = np.concatenate([[0], cs])[first]  # cumulative sum before each row starts
        taken |= cand & (cs - before[row_s] <= left[row_s])
    chosen = np.zeros(n_units, dtype=bool)
    chosen[order[taken]] = True
    return np.where((unit >= 0) & chosen[np.maximum(unit, 0)], unit, -1).reshape(B, L)
