"""The baseline's side of ``fer-bench perf``: how it sits on the shared timm backbone and the training loss a user
would write by hand in plain PyTorch."""

from __future__ import annotations

import torch
import torch.nn.functional as F

# The config key that puts the method on the benchmark's shared timm backbone.
BACKBONE_KEY = "backbone.name"


def plain_loss(method, batch: dict) -> torch.Tensor:
    """Cross-entropy of the linear head over the backbone's pooled features."""
    return F.cross_entropy(method.head(method.backbone(batch["image"])), batch["label"])
