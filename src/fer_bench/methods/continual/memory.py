"""The replay memory: per-class arrays of training-set indices (never tensors or images), in selection order.

PSMR (AngusMaiden/complex-FER) ranks a class's images by the model's score for that class and keeps the top m;
the random variant keeps a seeded random subset. Truncation keeps each list's prefix, so a shrinking budget keeps
the best-ranked exemplars. Selection depends only on its inputs, and under DDP rank 0's result is broadcast, so
every rank holds the same memory; ``digest`` lets a run check that.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import torch.distributed as dist


def budget(n_train: int, n_classes: int, fraction: float) -> tuple[int, int]:
    """(M, m): M = ⌊fraction × training images of all classes⌋, m = ⌊M / number of classes⌋."""
    total = int(fraction * n_train)
    return total, total // n_classes


def per_class(mode: str, total: int, m: int, seen: int) -> int:
    """Exemplars per class with ``seen`` classes: ``grow`` keeps m, ``limit`` shares M (⌊M / seen⌋)."""
    if mode == "grow":
        return m
    if mode == "limit":
        return total // seen
    raise ValueError(f"method.mem_mode={mode!r}; allowed: grow, limit")


class ReplayMemory:
    def __init__(self):
        self.slots: dict[int, np.ndarray] = {}  # int64 index arrays

    def select(self, cls: int, indices, m: int, scores=None, seed: int = 0) -> None:
        """Store ``m`` of ``indices`` for class ``cls``: the ``m`` highest ``scores`` (ties keep index order),
        or a random subset seeded by ``(seed, cls)`` when ``scores`` is None."""
        indices = np.asarray(indices, dtype=np.int64)
        if scores is None:
            order = np.random.default_rng([seed, cls]).permutation(len(indices))
        else:
            scores = np.asarray(scores, dtype=np.float64)
            if scores.shape != indices.shape:
                raise ValueError(f"{len(scores)} scores for {len(indices)} indices of class {cls}")
            order = np.argsort(-scores, kind="stable")
        self.slots[cls] = indices[order[:m]]

    def truncate(self, m: int) -> None:
        """Keep the first ``m`` exemplars of every class."""
        self.slots = {c: v[:m] for c, v in self.slots.items()}

    def indices(self) -> np.ndarray:
        """All stored indices, classes in ascending order."""
        return np.concatenate([self.slots[c] for c in sorted(self.slots)] or [np.zeros(0, np.int64)])

    def __len__(self) -> int:
        return sum(map(len, self.slots.values()))

    def state_dict(self) -> dict:
        return {"slots": {str(c): v.tolist() for c, v in self.slots.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.slots = {int(c): np.asarray(v, dtype=np.int64) for c, v in state["slots"].items()}

    def digest(self) -> str:
        return hashlib.sha1(json.dumps(self.state_dict(), sort_keys=True).encode()).hexdigest()

    def sync_from_rank0(self) -> None:
        """Under an initialised process group, replace this rank's memory by rank 0's."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            box = [self.state_dict()]
            dist.broadcast_object_list(box, src=0)
            self.load_state_dict(box[0])
