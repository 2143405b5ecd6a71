"""Rank-aware samplers: every rank derives the same global order from (seed, epoch) and takes its shard.

The DataModule sets ``use_distributed_sampler=False``, so these are the only samplers in play: training
samplers (shuffle, class-balanced, quadruplet) pad or trim their shards to equal length (DDP needs equal step
counts); the evaluation sampler never pads, so val/test metrics count every image exactly once
(torch's DistributedSampler would repeat images to even out the ranks).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler

ANCHOR_MODES = ("shuffle", "balanced")
NEGATIVE_MODES = ("frequency", "balanced")


def as_items(array: np.ndarray, chunk: int = 4096) -> Iterator:
    """The rows of an index array as Python values, converted a chunk at a time: an epoch's order stays one
    array instead of a list of per-item Python objects."""
    for start in range(0, len(array), chunk):
        yield from array[start : start + chunk].tolist()


def _world(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """Explicit (num_replicas, rank), else the initialised process group's, else (1, 0)."""
    active = dist.is_available() and dist.is_initialized()
    num_replicas = num_replicas if num_replicas is not None else (dist.get_world_size() if active else 1)
    rank = rank if rank is not None else (dist.get_rank() if active else 0)
    if not 0 <= rank < num_replicas:
        raise ValueError(f"rank {rank} is outside [0, {num_replicas})")
    return num_replicas, rank


class QuadrupletSampler(Sampler[tuple[int, int, int, int]]):
    """Yields QCS quadruplets ``(a, p, n, n2)`` of dataset indices, one at a time (birdwcp/QCS ``dataset_q0.py``).

    - anchors: ``shuffle`` = a permutation of all images (RAF-DB, FERPlus); ``balanced`` = draws with
      replacement weighted 1 / class count (AffectNet). Either way ``int(len(labels) * epoch_fraction)``
      anchors per epoch.
    - positive: another image of the anchor's class.
    - negative: ``frequency`` = uniform over all images with another label (its class follows data frequency);
      ``balanced`` = a class uniform over the other classes, then an image of it.
    - negative2: another image of the negative's class (never the negative itself).

    Every rank computes the same global sequence from ``(seed, epoch)`` and takes
    ``sequence[rank::num_replicas]``.
    Each rank gets the same count: with ``drop_last`` the global sequence is cut to a whole number of
    ``batch_size`` (per-device batch, in quadruplets) batches per rank, otherwise it is padded by wrapping.
    Use it as ``DataLoader(dataset, sampler=sampler, batch_size=batch_size)`` with a dataset whose
    ``__getitem__`` takes the tuple; call ``set_epoch`` before each epoch.
    """

    def __init__(
        self,
        labels: Sequence[int],
        batch_size: int,
        seed: int = 0,
        anchors: str = "shuffle",
        negatives: str = "frequency",
        epoch_fraction: float = 1.0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = True,
    ):
        if anchors not in ANCHOR_MODES:
            raise ValueError(f"anchors must be one of {ANCHOR_MODES}, got {anchors!r}")
        if negatives not in NEGATIVE_MODES:
            raise ValueError(f"negatives must be one of {NEGATIVE_MODES}, got {negatives!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not (epoch_fraction > 0 and (anchors == "balanced" or epoch_fraction <= 1)):
            raise ValueError(
                f"epoch_fraction {epoch_fraction} must be in (0, 1] (any > 0 for balanced anchors)"
            )
        labels = np.asarray(labels, dtype=np.int64)
        classes, self._cls, self._counts = np.unique(labels, return_inverse=True, return_counts=True)
        if len(classes) < 2:
            raise ValueError(f"quadruplets need at least 2 classes, got {classes.tolist()}")
        single = classes[self._counts < 2].tolist()
        if single:
            raise ValueError(
                f"class(es) {single} have a single image; every class needs >= 2 images for quadruplets"
            )
        self._order = np.argsort(self._cls, kind="stable")  # dataset indices grouped by class
        self._start = np.concatenate([[0], np.cumsum(self._counts)[:-1]])
        self._rank_in_class = np.empty(len(labels), dtype=np.int64)
        self._rank_in_class[self._order] = np.arange(len(labels)) - self._start[self._cls[self._order]]
        self.anchors, self.negatives, self.seed = anchors, negatives, seed
        self.num_replicas, self.rank = _world(num_replicas, rank)
        self.num_global = int(len(labels) * epoch_fraction + 1e-9)
        if drop_last:
            per_rank = self.num_global // self.num_replicas
            self.num_per_rank = per_rank - per_rank % batch_size
        else:
            self.num_per_rank = math.ceil(self.num_global / self.num_replicas)
        if self.num_per_rank == 0:
            raise ValueError(
                f"{self.num_global} quadruplets per epoch do not fill one batch of {batch_size} "
                f"on each of {self.num_replicas} rank(s)"
            )
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _other_member(self, rng: np.random.Generator, images: np.ndarray) -> np.ndarray:
        """For each image, a uniformly drawn different image of the same class."""
        cls = self._cls[images]
        r = rng.integers(0, self._counts[cls] - 1)
        r += r >= self._rank_in_class[images]
        return self._order[self._start[cls] + r]

    def _negative(self, rng: np.random.Generator, cls: np.ndarray) -> np.ndarray:
        """For each anchor class, an image of another class (frequency- or class-balanced)."""
        counts, start = self._counts[cls], self._start[cls]
        if self.negatives == "frequency":
            r = rng.integers(0, len(self._cls) - counts)
            return self._order[r + counts * (r >= start)]
        other = rng.integers(0, len(self._counts) - 1, size=len(cls))
        other += other >= cls
        return self._order[self._start[other] + rng.integers(0, self._counts[other])]

    def global_quadruplets(self, epoch: int) -> np.ndarray:
        """The epoch's global sequence as an array num_global × 4 (same on every rank)."""
        rng = np.random.default_rng([self.seed, epoch])
        size = len(self._cls)
        if self.anchors == "shuffle":
            a = rng.permutation(size)[: self.num_global]
        else:
            weights = 1.0 / self._counts[self._cls]
            a = rng.choice(size, size=self.num_global, replace=True, p=weights / weights.sum())
        p = self._other_member(rng, a)
        n = self._negative(rng, self._cls[a])
        n2 = self._other_member(rng, n)
        return np.stack([a, p, n, n2], axis=1)

    def __iter__(self) -> Iterator[tuple[int, int, int, int]]:
        quads = np.resize(self.global_quadruplets(self.epoch), (self.num_per_rank * self.num_replicas, 4))
        return map(tuple, as_items(quads[self.rank :: self.num_replicas]))

    def __len__(self) -> int:
        return self.num_per_rank


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
        return as_items(padded[self.rank :: self.world])

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


class TaskSampler(Sampler[int]):
    """A continual step's training items (``data.scenario.StepData``): ``fixed`` indices plus ``new_count``
    drawn without replacement from ``new_pool`` — per epoch with ``redraw``, else once per step — shuffled by
    ``(seed, epoch)``, sharded by rank. Cut to whole global batches (drop remainder); a step smaller than one
    global batch is wrapped up to one batch per rank."""

    def __init__(self, fixed: Sequence[int], new_pool: Sequence[int], new_count: int, batch_size: int,
                 redraw: bool, seed: int = 0, rank: int = 0, world: int = 1):
        if new_count > len(new_pool):
            raise ValueError(f"cannot draw {new_count} new-class items from a pool of {len(new_pool)}")
        self.fixed, self.pool = np.asarray(fixed, dtype=np.int64), np.asarray(new_pool, dtype=np.int64)
        self.new_count, self.redraw, self.seed, self.rank, self.world = new_count, redraw, seed, rank, world
        total = len(self.fixed) + new_count
        if total == 0:
            raise ValueError("a continual step has no training items")
        self.per_rank = max(1, total // (batch_size * world)) * batch_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def new_items(self, epoch: int) -> np.ndarray:
        """The new-class subset used in ``epoch`` (the same every epoch unless ``redraw``)."""
        rng = np.random.default_rng([self.seed, epoch if self.redraw else 0, 1])
        return rng.permutation(self.pool)[: self.new_count]

    def __iter__(self) -> Iterator[int]:
        items = np.concatenate([self.fixed, self.new_items(self.epoch)])
        order = np.random.default_rng([self.seed, self.epoch]).permutation(items)
        return as_items(np.resize(order, self.per_rank * self.world)[self.rank :: self.world])

    def __len__(self) -> int:
        return self.per_rank


class Seeded(NamedTuple):
    """A training item (an index or a quadruplet) with the seed of its augmentation."""

    item: Any
    seed: int


class AugmentSeeds(Sampler[Seeded]):
    """Wraps a training sampler: each item comes as ``Seeded(item, seed)``, the seed drawn from (seed, epoch, rank,
    position). Augmentations then depend on the run's seed alone: not on the worker processes (whose copies of one
    generator would repeat each other's draws) nor on the state of a process that resumed a killed run."""

    def __init__(self, sampler, seed: int, rank: int):
        self.sampler, self.seed, self.rank = sampler, seed, rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[Seeded]:
        seeds = np.random.default_rng([self.seed, self.epoch, self.rank]).integers(0, 2**63, size=len(self.sampler))
        return map(Seeded, self.sampler, as_items(seeds))

    def __len__(self) -> int:
        return len(self.sampler)
