"""MLM corruption over the same whole-word N-gram selection: 80% [MASK], 10% random token, 10% kept."""

from __future__ import annotations

import numpy as np

from pert.objectives.config import ObjectiveConfig
from pert.objectives.perlm import KEPT, SHUFFLED, to_predictions
from pert.objectives.select import select_units


def mlm_corrupt(ids: np.ndarray, word_start: np.ndarray, special: np.ndarray, rng: np.random.Generator,
                cfg: ObjectiveConfig, cap: int | None = None, mask_id: int = 103,
                random_ids: np.ndarray | None = None, **_) -> dict[str, np.ndarray]:
    """Mask selected whole-word units. ``labels`` hold the original token ids; ``kinds`` 1 changed, 2 kept.

    ``random_ids`` are the ids a random replacement draws from (default: every id but the specials)."""
    B, L = ids.shape
    cap = cap or cfg.predictions_cap(L)
    selected = select_units(word_start, special, rng, cfg.select_ratio, cfg.ngram_probs, cap) >= 0
    draw = rng.random((B, L))
    masked = selected & (draw < cfg.mask_ratio)
    randomised = selected & (draw >= cfg.mask_ratio) & (draw < cfg.mask_ratio + cfg.random_ratio)
    out = ids.copy()
    out[masked] = mask_id
    if random_ids is None:
        random_ids = np.setdiff1d(np.arange(int(ids.max()) + 1), np.unique(ids[special]))
    out[randomised] = rng.choice(random_ids, size=int(randomised.sum()))
    kind = np.where(masked | randomised, SHUFFLED, KEPT)
    return {
        "input_ids": out,
        "positions": to_predictions(selected, np.tile(np.arange(L), (B, 1)), cap, -1),
        "labels": to_predictions(selected, ids, cap, -100),
        "kinds": to_predictions(selected, kind, cap, 0),
    }
