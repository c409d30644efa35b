"""Pre-training objectives: whole-word N-gram selection, then PerLM permutation or MLM masking.

Everything works on NumPy arrays of a whole batch at once (no Python loop per token) and draws its
randomness from the ``numpy.random.Generator`` it is given, so a batch is reproducible from its seed.
"""

from pert.objectives.config import ObjectiveConfig
from pert.objectives.mlm import mlm_corrupt
from pert.objectives.perlm import perlm_corrupt
from pert.objectives.select import select_units

__all__ = ["ObjectiveConfig", "corrupt", "mlm_corrupt", "perlm_corrupt", "select_units"]


def corrupt(ids, word_start, special, rng, cfg: ObjectiveConfig, **kw):
    """The batch corruption of ``cfg.objective``."""
    fn = perlm_corrupt if cfg.objective == "perlm" else mlm_corrupt
    return fn(ids, word_start, special, rng, cfg, **kw)
