"""Valence/arousal metrics: Lin's concordance correlation coefficient (CCC) and the CCC loss.

CCC = 2·s_xy / (s_x² + s_y² + (μ_x − μ_y)²). The **metric** uses population statistics (divide by N), as the ABAW
evaluation does (arXiv 2402.19344). The **loss** defaults to unbiased statistics (divide by N − 1), as the
HSEmotion training code does (av-savchenko/face-emotion-recognition, notebook train_emotions-pytorch.ipynb), with an
ε floor under the denominator: it acts only when the denominator falls below ε (a batch with constant targets and
predictions), so ordinary batches get exactly the official value (HSEmotion's ``ConcordanceCorCoeff`` has no ε).
Inputs are (N,) or (N, D); with (N, D) every column is an output (e.g. valence, arousal) and the result has shape
(D,).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


def _check(preds: Tensor, target: Tensor) -> None:
    if preds.shape != target.shape or preds.ndim not in (1, 2):
        raise ValueError(f"expected preds and target of equal shape (N,) or (N, D), got "
                         f"{tuple(preds.shape)}, {tuple(target.shape)}")


def ccc(preds: Tensor, target: Tensor, unbiased: bool = False, eps: float = 0.0) -> Tensor:
    """Concordance correlation coefficient over dim 0 (population statistics unless ``unbiased``); ``eps`` is a
    floor under the denominator."""
    _check(preds, target)
    dtype = torch.promote_types(torch.promote_types(preds.dtype, target.dtype), torch.float32)
    preds, target = preds.to(dtype), target.to(dtype)
    n = preds.shape[0]
    dof = max(n - 1, 1) if unbiased else n
    mx, my = preds.mean(dim=0), target.mean(dim=0)
    dx, dy = preds - mx, target - my
    cov = (dx * dy).sum(dim=0) / dof
    vx, vy = dx.square().sum(dim=0) / dof, dy.square().sum(dim=0) / dof
    return 2 * cov / (vx + vy + (mx - my).square()).clamp_min(eps)


def ccc_loss(preds: Tensor, target: Tensor, unbiased: bool = True, eps: float = 1e-8) -> Tensor:
    """Differentiable 1 − CCC per output (the caller forms e.g. (1 − CCC_V)/2 + (1 − CCC_A)/2)."""
    return 1 - ccc(preds, target, unbiased=unbiased, eps=eps)


class CCC(Metric):
    """Population CCC from sum states (n, Σx, Σy, Σx², Σy², Σxy in float64): exact under DDP.

    ``compute()`` returns a scalar for ``num_outputs=1``, else a (num_outputs,) tensor.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, num_outputs: int = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_outputs = num_outputs
        for name in ("n", "sx", "sy", "sxx", "syy", "sxy"):
            self.add_state(name, torch.zeros(num_outputs, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        _check(preds, target)
        x, y = preds.detach().double(), target.detach().double()
        if x.ndim == 1:
            x, y = x.unsqueeze(1), y.unsqueeze(1)
        if x.shape[1] != self.num_outputs:
            raise ValueError(f"expected {self.num_outputs} outputs, got {x.shape[1]}")
        self.n += x.shape[0]
        self.sx += x.sum(dim=0)
        self.sy += y.sum(dim=0)
        self.sxx += (x * x).sum(dim=0)
        self.syy += (y * y).sum(dim=0)
        self.sxy += (x * y).sum(dim=0)

    def compute(self) -> Tensor:
        mx, my = self.sx / self.n, self.sy / self.n
        vx = self.sxx / self.n - mx * mx
        vy = self.syy / self.n - my * my
        cov = self.sxy / self.n - mx * my
        return (2 * cov / (vx + vy + (mx - my) ** 2)).float()
