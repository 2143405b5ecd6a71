"""CAFE's network (ECCV 2024, Eq. 1-3): frozen CLIP features F, an input-dependent sigmoid mask from a trainable
CNN, and a linear classifier on F ⊙ mask; without a mask it is the CLIP linear probe (or fine-tuning, with a
trainable tower)."""

from __future__ import annotations

import torch
from torch import nn

from fer_bench.models import backbones
from fer_bench.models.clip_tower import ClipImageTower


class MaskNet(nn.Module):
    """σ(GAP of a timm trunk's last post-ReLU stage), B×``dim`` in [0.5, 1) (paper Eq. 1; ResNet-18 by default,
    MS-Celeb-1M face-recognition weights from ``weights``, loaded strictly). A trunk giving k·dim features is
    reduced by the mean of k adjacent channels (the paper's ResNet-50 2048 → 512)."""

    def __init__(self, trunk: str, dim: int, weights: str | None = None):
        super().__init__()
        self.trunk, info = backbones.create(trunk, weights=weights)
        if info.num_features % dim:
            raise ValueError(f"mask trunk '{trunk}' gives {info.num_features} features, not a multiple of the CLIP "
                             f"tower's {dim}")
        self.dim, self.window = dim, info.num_features // dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pooled = self.trunk(images)
        if self.window > 1:
            pooled = pooled.reshape(pooled.shape[0], self.dim, self.window).mean(-1)
        return torch.sigmoid(pooled)


class CafeNet(nn.Module):
    """logits = FC(F ⊙ mask(x)) with F = tower(x) (paper Eq. 2-3); without ``mask``, logits = FC(F)."""

    def __init__(self, tower: ClipImageTower, num_classes: int, mask: MaskNet | None = None):
        super().__init__()
        self.tower, self.mask = tower, mask
        self.fc = nn.Linear(tower.out_dim, num_classes)

    def parts(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """CLIP features F (B×D) and the mask (B×D, or None without a mask branch)."""
        return self.tower(images), None if self.mask is None else self.mask(images)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The (masked) CLIP features the classifier sees, B×D."""
        features, mask = self.parts(images)
        return features if mask is None else features * mask

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(images))
