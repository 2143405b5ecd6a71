"""Rank-aware index samplers: every rank derives the same global order from (seed, epoch) and takes its shard.

The DataModule sets ``use_distributed_sampler=False``, so these are the only samplers in play: training
samplers pad their shards to equal length (DDP needs equal step counts); the evaluation sampler never pads,
so val/test metrics count every image exactly once (specs/lessons.md §1.1).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class ShuffleSampler(Sampler[int]):
    """A fresh permutation of all items each epoch, padded and sharded by rank."""

    def __init__(self, size: int, seed: int = 0, rank: int = 0, world: int = 1):
        self.num_global = size
        self.seed, self.rank, self.world = seed, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def global_order(self, rng: np.random.Generator) -> np.ndarray:
        return rng.permutation(self.num_global)

    def __iter__(self) -> Iterator[int]:
        order = self.global_order(np.random.default_rng([self.seed, self.epoch]))
        padded = np.resize(order, len(self) * self.world)
        return iter(padded[self.rank :: self.world].tolist())

    def __len__(self) -> int:
        return -(-self.num_global // self.world)


class ClassBalancedSampler(ShuffleSampler):
    """Draws with replacement, each item weighted 1 / (its class count): classes appear equally often."""

    def __init__(self, labels: Sequence[int], num_samples: int | None = None, seed: int = 0, rank: int = 0,
                 world: int = 1):
        labels = np.asarray(labels)
        super().__init__(num_samples or len(labels), seed, rank, world)
        counts = np.bincount(labels)
        weights = 1.0 / counts[labels]
        self.probabilities = weights / weights.sum()

    def global_order(self, rng: np.random.Generator) -> np.ndarray:
        return rng.choice(len(self.probabilities), size=self.num_global, replace=True, p=self.probabilities)


class EvalShardSampler(Sampler[int]):
    """Items rank, rank + world, ...: shards of unequal length, no item repeated."""

    def __init__(self, size: int, rank: int = 0, world: int = 1):
        self.size, self.rank, self.world = size, rank, world

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.size, self.world))

    def __len__(self) -> int:
        return len(range(self.rank, self.size, self.world))
