"""Class centres and the centre loss of Wen et al. (ECCV 2016), Eqs. 2 and 4.

The loss pulls each deep feature towards its class centre, ``L_C = ½‖x_i − c_{y_i}‖²`` (averaged over the batch
here; the paper sums). The centres are not trained by the optimiser: after every step each centre moves towards the
batch features of its class, ``c_j ← c_j − α·Δc_j`` with ``Δc_j = Σ_{i: y_i=j} (c_j − x_i) / (1 + n_j)``, where
``n_j`` counts the batch's samples of class ``j`` (a class absent from the batch stays put).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class ClassCentres(nn.Module):
    """One centre per class in feature space: a buffer, saved with the checkpoint. The paper leaves the initial
    centres open; they start at zero here."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.register_buffer("centres", torch.zeros(num_classes, dim))

    def loss(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``½‖x − c_y‖²`` averaged over the batch; no gradient reaches the centres."""
        return 0.5 * (features - self.centres[labels]).pow(2).sum(1).mean()

    @torch.no_grad()
    def update(self, features: torch.Tensor, labels: torch.Tensor, alpha: float,
               sum_over_ranks: Callable[[torch.Tensor], torch.Tensor] = lambda t: t) -> None:
        """Move the centres by Eq. 4. ``sum_over_ranks`` adds the per-class sums and counts of every process, so
        that under DDP every rank applies the update of the global batch and the centres stay identical."""
        diffs = self.centres[labels] - features.detach().to(self.centres.dtype)
        sums = torch.zeros_like(self.centres).index_add_(0, labels, diffs)
        counts = torch.bincount(labels, minlength=len(self.centres)).to(sums)
        totals = sum_over_ranks(torch.cat([sums, counts[:, None]], dim=1))
        self.centres -= alpha * totals[:, :-1] / (1 + totals[:, -1:])
