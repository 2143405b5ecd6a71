"""Dense heads trained the way the HSEmotion ABAW notebooks train them in Keras
(av-savchenko/face-emotion-recognition ``src/ABAW/ABAW6/``).

- Layers: Glorot-uniform kernels, zero biases; optional one hidden ReLU layer.
- Optimiser: Adam, lr 1e-3, eps 1e-7 (Keras' default ε); the data is reshuffled every epoch; the last partial
  batch is kept.
- Losses are Keras-style sample-weighted means: Σ_i w_i·loss_i / B (divided by the batch size, not by Σ w_i), plus
  ``l2(λ)`` = λ·ΣW² over the kernels.
- A checkpoint callback keeps the weights of the best epoch on the validation data.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fer_bench.metrics.regression import ccc_loss

ADAM_EPS = 1e-7


class DenseHead(nn.Module):
    """Features → [Dense(hidden, relu)] → Dense(out); ``forward`` gives pre-activation outputs."""

    def __init__(self, in_features: int, out_features: int, hidden: int = 0):
        super().__init__()
        dims = [in_features, *([hidden] if hidden else []), out_features]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            dense = nn.Linear(a, b)
            nn.init.xavier_uniform_(dense.weight)
            nn.init.zeros_(dense.bias)
            layers += [dense, nn.ReLU()] if i < len(dims) - 2 else [dense]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)

    def l2(self) -> Tensor:
        """ΣW² over the kernels (Keras ``kernel_regularizer``; biases are not regularised)."""
        return sum(m.weight.square().sum() for m in self.layers if isinstance(m, nn.Linear))


def class_weighted_ce(logits: Tensor, target: Tensor, class_weight: Tensor) -> Tensor:
    """Sparse categorical cross-entropy with Keras ``class_weight``: Σ_i w_{y_i}·CE_i / B."""
    return (class_weight[target] * F.cross_entropy(logits, target, reduction="none")).sum() / len(target)


def au_weights(target: Tensor) -> tuple[Tensor, Tensor]:
    """Per-AU (w0, w1) = (N / (2·negatives), N / (2·positives)) of binary training targets (N, A)."""
    n = target.shape[0]
    pos = target.float().sum(0)
    return n / (2 * (n - pos).clamp(min=1)), n / (2 * pos.clamp(min=1))


def weighted_bce(logits: Tensor, target: Tensor, w0: Tensor, w1: Tensor) -> Tensor:
    """Per element w0^(1−y)·w1^y·BCE, averaged over AUs, then over the batch (from logits, for stability)."""
    y = target.float()
    bce = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    return (torch.where(y > 0, w1, w0) * bce).mean()


def va_ccc_loss(raw: Tensor, target: Tensor) -> Tensor:
    """1 − mean CCC over the columns of tanh(raw) (batch CCC, unbiased statistics)."""
    return ccc_loss(torch.tanh(raw), target).mean()


def fit(head: DenseHead, loss_fn: Callable[[Tensor, Tensor], Tensor], train: tuple[Tensor, Tensor],
        val: tuple[Tensor, Tensor], score_fn: Callable[[Tensor, Tensor], float], epochs: int, batch_size: int,
        lr: float = 1e-3, l2: float = 0.0, seed: int = 0) -> tuple[int, float]:
    """Train ``head`` on ``train`` = (x, y); after each epoch score the raw outputs on ``val`` (higher is better)
    and finally restore the best epoch's weights. Returns (best epoch, its score)."""
    with single_thread():
        best = _fit(head, loss_fn, train, val, score_fn, epochs, batch_size, lr, l2, seed)
    head.load_state_dict(best[2])
    head.eval()
    return best[0], best[1]


@contextmanager
def single_thread() -> Iterator[None]:
    """One intra-op thread: heads this small gain nothing from threads, and on a busy machine every parallel
    region of a tiny op waits for a descheduled thread (measured 40x slower with 2 threads on 2 busy cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _fit(head, loss_fn, train, val, score_fn, epochs, batch_size, lr, l2, seed) -> tuple[int, float, dict]:
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(head.parameters(), lr=lr, eps=ADAM_EPS)
    x, y = train
    best: tuple[int, float, dict] | None = None
    for epoch in range(epochs):
        head.train()
        for idx in torch.randperm(len(x), generator=generator).split(batch_size):
            loss = loss_fn(head(x[idx]), y[idx])
            if l2:
                loss = loss + l2 * head.l2()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        head.eval()
        with torch.no_grad():
            score = float(score_fn(head(val[0]), val[1]))
        score = -math.inf if math.isnan(score) else score
        if best is None or score > best[1]:
            best = (epoch, score, copy.deepcopy(head.state_dict()))
    if best is None:
        raise ValueError("a downstream head needs epochs >= 1")
    return best
