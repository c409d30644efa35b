"""The stream of corrupted micro-batches, addressable by position so that a resumed run continues exactly.

Micro-batch m of process r: epoch e, index k = divmod(m, batches_per_epoch); its sequences are slice k of
this process's share (every world-th) of epoch e's permutation of the training sequences; its selection and
permutation use a generator seeded by (seed, e, r, k). Nothing depends on what ran before.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from pert.corpus.dataset import PreparedCorpus
from pert.objectives import ObjectiveConfig, corrupt


class CorruptedBatches(Dataset):
    """Item k = the k-th micro-batch of one epoch of one process, corrupted, as tensors."""

    def __init__(self, corpus: PreparedCorpus, seq_ids: np.ndarray, batch_size: int, seq_len: int,
                 cfg: ObjectiveConfig, seed: tuple[int, ...]):
        self.corpus, self.seq_ids, self.batch_size, self.seq_len = corpus, seq_ids, batch_size, seq_len
        self.cfg, self.seed = cfg, seed
        special = np.array([corpus.cls_id, corpus.sep_id, corpus.pad_id, corpus.mask_id,
                            corpus.manifest["special_ids"]["unk"]])
        self.random_ids = np.setdiff1d(np.arange(corpus.vocab_size), special)

    def __len__(self) -> int:
        return len(self.seq_ids) // self.batch_size

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        ids = self.seq_ids[k * self.batch_size:(k + 1) * self.batch_size]
        packed = self.corpus.batch(ids, self.seq_len)
        rng = np.random.default_rng([*self.seed, k])
        out = corrupt(packed.ids, packed.word_start, packed.special, rng, self.cfg,
                      mask_id=self.corpus.mask_id, random_ids=self.random_ids)
        out["attention_mask"] = packed.attention_mask
        return {name: torch.from_numpy(np.ascontiguousarray(a)) for name, a in out.items()}


class PretrainData:
    """Training and held-out micro-batches of one process."""

    def __init__(self, corpus: PreparedCorpus, cfg, rank: int = 0, world: int = 1):
        self.corpus, self.cfg, self.rank, self.world = corpus, cfg, rank, world
        n = corpus.num_sequences(cfg.max_seq_len)
        n_eval = min(cfg.eval_sequences, n // 10)
        self.train_ids = np.arange(n - n_eval)
        self.eval_ids = np.arange(n - n_eval, n)
        self.per_epoch = len(self.train_ids) // world // cfg.batch_size
        if self.per_epoch == 0:
            raise ValueError(f"{corpus.path}: {len(self.train_ids)} training sequences of {cfg.max_seq_len} "
                             f"tokens cannot fill one batch of {cfg.batch_size} per process x {world} processes")

    def _epoch(self, epoch: int) -> CorruptedBatches:
        order = np.random.default_rng([self.cfg.seed, epoch]).permutation(self.train_ids)
        share = order[self.rank::self.world][: self.per_epoch * self.cfg.batch_size]
        return CorruptedBatches(self.corpus, share, self.cfg.batch_size, self.cfg.max_seq_len, self.cfg,
                                (self.cfg.seed, epoch, self.rank))

    def train(self, start: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        """Micro-batches from global position ``start`` on, across epochs, forever."""
        epoch, k = divmod(start, self.per_epoch)
        while True:
            yield from self._loader(self._epoch(epoch), range(k, self.per_epoch))
            epoch, k = epoch + 1, 0

    def eval(self) -> Iterator[dict[str, torch.Tensor]]:
        """The held-out batches of this process: same sequences and corruption at every evaluation."""
        share = self.eval_ids[self.rank::self.world]
        bs = min(self.cfg.batch_size, max(1, len(share)))
        ds = CorruptedBatches(self.corpus, share, bs, self.cfg.max_seq_len, self.cfg,
                              (self.cfg.seed, 1 << 30, self.rank))  # an epoch number training never reaches
        return iter(self._loader(ds, range(len(ds))))

    def _loader(self, ds: Dataset, indices: range) -> DataLoader:
        workers = self.cfg.num_workers if len(indices) > 1 else 0
        # its own generator: a DataLoader draws a seed when iterated, which must not move the global RNG
        # that dropout uses (a resumed run would otherwise drop different units)
        return DataLoader(ds, batch_size=None, sampler=indices, num_workers=workers,
                          prefetch_factor=4 if workers else None, persistent_workers=False,
                          generator=torch.Generator().manual_seed(self.cfg.seed), worker_init_fn=_leave_sigterm)


def _leave_sigterm(_: int) -> None:
    """A data worker ignores SIGTERM: sent to the whole process group (``pkill``, a service manager, ``timeout``),
    it would kill the worker first and the run would die without its checkpoint. The run's own process handles it,
    saves and exits; the worker ends with it (torch's workers watch their parent)."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
