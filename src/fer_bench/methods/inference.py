"""Inference of any method over a subset of a data set, in this process: what a scenario step's evaluation and a
method's own selection rules (e.g. replay memory) share."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Subset


@torch.no_grad()
def infer(method, dataset, indices, fn, batch_size: int = 128) -> torch.Tensor:
    """``fn(images)`` over ``dataset[indices]`` in eval mode, on the method's device, in this process (exact: no
    sharding); the outputs concatenated in the order of ``indices`` (float, on the CPU)."""
    device = next(method.parameters()).device
    method.eval()
    loader = DataLoader(Subset(dataset, list(map(int, indices))), batch_size=batch_size, num_workers=0)
    outs = [fn(batch["image"].to(device)).float().cpu() for batch in loader]
    return torch.cat(outs) if outs else torch.empty(0)
