"""The multitask method's side of ``fer-bench perf``: how it sits on the shared timm backbone and the training loss a
user would write by hand in plain PyTorch (expression + valence/arousal, all layers trained)."""

from __future__ import annotations

import torch

from fer_bench.methods.multitask.net import expression_loss, va_loss

# The config key that puts the method on the benchmark's shared timm backbone.
BACKBONE_KEY = "backbone.name"


def plain_loss(method, batch: dict) -> torch.Tensor:
    """Weighted expression cross-entropy plus the valence and arousal terms of the joint output."""
    logits, va = method.net.split(method.net(batch["image"]))
    loss_v, loss_a = va_loss(va, batch["va"])
    return expression_loss(logits, batch["label"], method.class_weight) + loss_v + loss_a
