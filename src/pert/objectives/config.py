"""Options of the pre-training objectives, with the paper's defaults."""

from __future__ import annotations

import math
from dataclasses import dataclass

from pert.config import check, field


@dataclass
class ObjectiveConfig:
    objective: str = field("perlm", help="perlm (permuted language model) or mlm (BERT-style masking)")
    select_ratio: float = field(0.15, help="share of a sequence's real tokens selected for prediction")
    ngram_probs: list[float] = field([0.4, 0.3, 0.2, 0.1], help="probabilities of 1..n-word units")
    max_predictions: int | None = field(None, help="cap on selected tokens per sequence "
                                        "(default: 75 per 512 tokens, as HFL used)")
    shuffle_ratio: float = field(0.9, help="PerLM: share of selected tokens that are shuffled (rest kept)")
    scope: str = field("span", help="PerLM: shuffle each shuffled unit (word or N-gram) within itself (span, as the "
                       "authors' figure and README table show; one-token units cannot move) or all shuffled tokens "
                       "among themselves across the sequence (global, an ablation)")
    mask_ratio: float = field(0.8, help="MLM: share of selected tokens replaced by [MASK]")
    random_ratio: float = field(0.1, help="MLM: share of selected tokens replaced by a random token")

    def __post_init__(self) -> None:
        check(self.objective in ("perlm", "mlm"), "objective", f"must be perlm or mlm, not {self.objective!r}")
        check(0 < self.select_ratio < 1, "select_ratio", "must be between 0 and 1")
        check(len(self.ngram_probs) >= 1 and all(p >= 0 for p in self.ngram_probs)
              and abs(sum(self.ngram_probs) - 1) < 1e-6, "ngram_probs", "must be non-negative and sum to 1")
        check(self.max_predictions is None or self.max_predictions >= 1, "max_predictions", "must be >= 1")
        check(0 <= self.shuffle_ratio <= 1, "shuffle_ratio", "must be between 0 and 1")
        check(self.scope in ("span", "global"), "scope", f"must be span or global, not {self.scope!r}")
        check(self.mask_ratio >= 0 and self.random_ratio >= 0 and self.mask_ratio + self.random_ratio <= 1,
              "mask_ratio", "and --random-ratio must be >= 0 and sum to at most 1")

    def predictions_cap(self, seq_len: int) -> int:
        """Most selected tokens per sequence of ``seq_len``."""
        return self.max_predictions or max(1, math.ceil(seq_len * 75 / 512))
