"""Best-epoch checkpointing with Keras' ``min_delta``: an epoch becomes the new best only when it beats the kept
best by more than ``min_delta`` (Keras ``EarlyStopping(min_delta=d, restore_best_weights=True)``, which restores
that epoch). With ``min_delta=0`` it is Lightning's ``ModelCheckpoint`` (any strict improvement)."""

from __future__ import annotations

import torch
from lightning.pytorch.callbacks import ModelCheckpoint


class MinDeltaCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` (``save_top_k=1``) whose new best must improve on the kept one by more than ``min_delta``."""

    def __init__(self, min_delta: float = 0.0, **kwargs):
        super().__init__(save_top_k=1, **kwargs)
        if min_delta < 0:
            raise ValueError(f"min_delta={min_delta}: give a value >= 0")
        self.min_delta = min_delta

    def check_monitor_top_k(self, trainer, current: torch.Tensor | None = None) -> bool:
        if current is None or not self.best_k_models:
            return super().check_monitor_top_k(trainer, current)
        best = self.best_k_models[self.kth_best_model_path]
        better = current < best - self.min_delta if self.mode == "min" else current > best + self.min_delta
        return trainer.strategy.reduce_boolean_decision(bool(better))
