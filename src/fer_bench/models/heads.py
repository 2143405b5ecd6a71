"""Classification heads on pooled features."""

from __future__ import annotations

from torch import nn


class LinearHead(nn.Module):
    """Dropout then a linear layer to the class logits."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x):
        return self.fc(self.dropout(x))
