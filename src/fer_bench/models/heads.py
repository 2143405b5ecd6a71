"""Classification heads on pooled features."""

from __future__ import annotations

import torch
from torch import nn


class LinearHead(nn.Module):
    """Dropout then a linear layer to the class logits."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x):
        return self.fc(self.dropout(x))


def glorot_linear(in_features: int, out_features: int) -> nn.Linear:
    """A linear layer with Keras' default init: Glorot-uniform kernel, zero bias."""
    layer = nn.Linear(in_features, out_features)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class ExpandableHead(nn.Module):
    """Dropout → [Linear → activation → dropout] per hidden width → Linear to K logits; ``grow`` adds outputs.

    complex-FER's head: hidden (512, 32), sigmoid, dropout 0.2. Growing builds a new Glorot-initialised output
    layer for K + n classes and copies the old K rows, so old logits are unchanged for every input.
    """

    ACTIVATIONS = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU}

    def __init__(self, in_features: int, num_classes: int, hidden: tuple[int, ...] = (512, 32),
                 dropout: float = 0.2, activation: str = "sigmoid"):
        super().__init__()
        if activation not in self.ACTIVATIONS:
            raise ValueError(f"head activation {activation!r}; allowed: {', '.join(self.ACTIVATIONS)}")
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        width = in_features
        for h in hidden:
            layers += [glorot_linear(width, h), self.ACTIVATIONS[activation](), nn.Dropout(dropout)]
            width = h
        self.body = nn.Sequential(*layers)
        self.out = glorot_linear(width, num_classes)

    @property
    def num_classes(self) -> int:
        return self.out.out_features

    def grow(self, n: int) -> None:
        """Add ``n`` outputs, keeping the old rows of the output layer."""
        old = self.out
        new = glorot_linear(old.in_features, old.out_features + n).to(old.weight.device, old.weight.dtype)
        with torch.no_grad():
            new.weight[: old.out_features] = old.weight
            new.bias[: old.out_features] = old.bias
        self.out = new

    def resize(self, num_classes: int) -> None:
        """Grow to ``num_classes`` outputs (a checkpoint's head size) if smaller."""
        if num_classes > self.num_classes:
            self.grow(num_classes - self.num_classes)

    def forward(self, x):
        return self.out(self.body(x))
