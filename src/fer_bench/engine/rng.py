"""The global random states in every checkpoint, so that a resumed run continues the draws of the killed one.

Lightning's checkpoints hold weights, optimizer, schedulers and loop counters, not the random generators; without
them a resumed run's dropout and random ops would draw differently from an uninterrupted run's. (Augmentations
are seeded per item from the run's seed, ``data.samplers.AugmentSeeds``, and need no state.) States are stored as
plain lists and tensors so that checkpoints still load with ``weights_only=True``.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback


class RngState(Callback):
    """Saves Python, NumPy, torch CPU and CUDA generator states with each checkpoint; restores them on resume."""

    def state_dict(self) -> dict:
        version, internal, gauss = random.getstate()
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        return {
            "python": [version, list(internal), gauss],
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def load_state_dict(self, state: dict) -> None:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
