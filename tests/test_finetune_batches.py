"""Length-grouped training batches: every feature once per epoch, little padding, reproducible, reshuffled."""

from __future__ import annotations

import random

import torch

from pert.tasks.loop import LengthGroupedBatches


def _epoch(sampler: LengthGroupedBatches) -> list[list[int]]:
    return list(iter(sampler))


def test_each_feature_once_per_epoch_and_padding_cut() -> None:
    rng = random.Random(0)
    lengths = [rng.randint(5, 128) for _ in range(1000)]
    sampler = LengthGroupedBatches(lengths, 16, torch.Generator().manual_seed(1), window=10)
    first, second = _epoch(sampler), _epoch(sampler)
    assert len(first) == len(sampler) == 63
    for epoch in (first, second):
        assert sorted(i for b in epoch for i in b) == list(range(1000))
        assert sorted(len(b) for b in epoch)[:2] == [8, 16]  # 1000 = 62 x 16 + 8: one short batch
    assert first != second  # a fresh order every epoch

    def padded(batches: list[list[int]]) -> int:
        return sum(len(b) * max(lengths[i] for i in b) for b in batches)

    shuffled = list(range(1000))
    rng.shuffle(shuffled)
    plain = [shuffled[i:i + 16] for i in range(0, 1000, 16)]
    assert padded(first) < 0.75 * padded(plain)  # sorted windows: far fewer padding positions


def test_same_seed_same_batches() -> None:
    lengths = list(range(100))
    a = _epoch(LengthGroupedBatches(lengths, 8, torch.Generator().manual_seed(3)))
    b = _epoch(LengthGroupedBatches(lengths, 8, torch.Generator().manual_seed(3)))
    assert a == b
    # a window holds the whole set here: every batch is a run of consecutive lengths
    assert all(b == list(range(b[0], b[0] + len(b))) for b in a)
