"""Action-unit metrics: per-AU binary F1, its mean, and per-AU threshold tuning.

Inputs are (N, A): one column per AU, positive class 1. F1 = 2·TP / (2·TP + FP + FN), and **0 where an AU
has no positives and no predicted positives** (= scikit-learn ``f1_score(..., zero_division=0)``). A score
counts as positive when ``score >= threshold`` (compared in float32).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from fer_bench.metrics.classification import synced

DEFAULT_GRID = tuple(round(0.1 * k, 1) for k in range(1, 10))  # 0.1 … 0.9, as in HSEmotion's ABAW-6 AU head


def _counts(preds: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """TP, FP, FN per AU (summed over dim -2) of binary predictions and binary targets."""
    if preds.shape != target.shape or preds.ndim < 2:
        raise ValueError(f"expected preds and target of equal shape (N, A), got {tuple(preds.shape)}, "
                         f"{tuple(target.shape)}")
    if ((target != 0) & (target != 1)).any():
        raise ValueError("AU targets must be 0 or 1 (drop frames with missing labels first)")
    p, t = preds.bool(), target.bool()
    return (p & t).sum(-2), (p & ~t).sum(-2), (~p & t).sum(-2)


def _f1(tp: Tensor, fp: Tensor, fn: Tensor) -> Tensor:
    """Binary F1 per AU from counts (float64); 0 where 2·TP + FP + FN = 0."""
    denom = (2 * tp + fp + fn).double()
    return torch.where(denom > 0, 2 * tp / denom.clamp(min=1), torch.zeros_like(denom))


def au_f1(preds_binary: Tensor, target_binary: Tensor) -> tuple[Tensor, Tensor]:
    """Per-AU F1 (A,) and its mean."""
    f1 = _f1(*_counts(preds_binary, target_binary)).float()
    return f1, f1.mean()


def tune_thresholds(
    scores: Tensor, target: Tensor, grid: Tensor | tuple[float, ...] = DEFAULT_GRID
) -> Tensor:
    """Per-AU threshold from ``grid`` maximising that AU's F1 (ties: the smallest). Use on val only."""
    grid = torch.as_tensor(grid, dtype=torch.float32, device=scores.device)
    preds = scores.float().unsqueeze(0) >= grid.view(-1, 1, 1)  # (G, N, A)
    f1 = _f1(*_counts(preds, target.unsqueeze(0).expand_as(preds)))  # (G, A)
    return grid[f1.argmax(dim=0)]


class AUF1(Metric):
    """Mean AU F1 from TP/FP/FN sum states (exact under DDP); ``update`` takes scores (N, A), binary targets.

    ``threshold``: a float or a per-AU tensor (A,). ``compute()`` gives the mean F1, ``per_au()`` the vector.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, num_aus: int, threshold: float | Tensor = 0.5, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_aus = num_aus
        # a plain float32 tensor, not a buffer: module dtype casts (bf16-true precision) must not round it
        self.threshold = torch.as_tensor(threshold, dtype=torch.float32).expand(num_aus).clone()
        for name in ("tp", "fp", "fn"):
            self.add_state(name, torch.zeros(num_aus, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, scores: Tensor, target: Tensor) -> None:
        if scores.ndim != 2 or scores.shape[1] != self.num_aus:
            raise ValueError(f"expected scores (N, {self.num_aus}), got {tuple(scores.shape)}")
        tp, fp, fn = _counts(scores.float() >= self.threshold.to(scores.device), target)
        self.tp += tp
        self.fp += fp
        self.fn += fn

    def compute(self) -> Tensor:
        return _f1(self.tp, self.fp, self.fn).mean().float()

    def per_au(self) -> Tensor:
        """Per-AU F1 over all processes."""
        with synced(self):
            return _f1(self.tp, self.fp, self.fn).float()
