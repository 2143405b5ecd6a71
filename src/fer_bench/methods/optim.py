"""Optimizers and learning-rate schedules built from the ``optim.*`` and ``sched.*`` config blocks."""

from __future__ import annotations

import math

import torch

from fer_bench.models.sam import SAM


def _base_optimizer(optim_cfg) -> tuple[type[torch.optim.Optimizer], dict]:
    kwargs = {"lr": optim_cfg.lr, "weight_decay": optim_cfg.weight_decay}
    if optim_cfg.name == "adam":
        return torch.optim.Adam, kwargs
    if optim_cfg.name == "adamw":
        return torch.optim.AdamW, kwargs
    return torch.optim.SGD, {**kwargs, "momentum": optim_cfg.momentum, "nesterov": True}


def build_optimizer(params, optim_cfg) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD over ``params``; wrapped in SAM when ``optim.sam.enabled`` (two-pass steps)."""
    cls, kwargs = _base_optimizer(optim_cfg)
    if optim_cfg.sam.enabled:
        return SAM(params, cls, rho=optim_cfg.sam.rho, adaptive=optim_cfg.sam.adaptive, **kwargs)
    return cls(params, **kwargs)


def epoch_lr_factor(sched_cfg, max_epochs: int):
    """Multiplier of the base learning rate at each epoch: linear warm-up, then cosine or exponential."""
    warmup = sched_cfg.warmup_epochs

    def factor(epoch: int) -> float:
        if epoch < warmup:
            return (epoch + 1) / (warmup + 1)
        if sched_cfg.name == "exponential":
            return sched_cfg.gamma ** (epoch - warmup)
        if sched_cfg.name == "cosine":
            progress = (epoch - warmup) / max(1, max_epochs - warmup)
            floor = sched_cfg.min_lr_ratio
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
        return 1.0

    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, sched_cfg, max_epochs: int):
    """A per-epoch LambdaLR implementing ``epoch_lr_factor``."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, epoch_lr_factor(sched_cfg, max_epochs))
