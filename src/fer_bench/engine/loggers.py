"""Loggers of a run: CSV always; Weights & Biases when enabled, offline unless WANDB_MODE says otherwise."""

from __future__ import annotations

import os
from pathlib import Path

from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from fer_bench.engine.csv_history import ContinuingCSVLogger


def build_loggers(cfg: DictConfig, run_dir: Path) -> list[Logger]:
    loggers: list[Logger] = [ContinuingCSVLogger(str(run_dir), name="", version="logs")]  # kept over resumes
    if cfg.logger.wandb:
        from lightning.pytorch.loggers import WandbLogger

        offline = os.environ.get("WANDB_MODE") is None  # the user's WANDB_MODE wins; default offline
        wandb_logger = WandbLogger(project=cfg.logger.project, entity=cfg.logger.entity, name=run_dir.name,
                                   save_dir=str(run_dir), offline=offline, tags=list(cfg.logger.tags))
        wandb_logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        loggers.append(wandb_logger)
    return loggers


def log_images(loggers: list[Logger], images: dict[str, Path]) -> None:
    """Send PNGs to the loggers that take images (W&B)."""
    for logger in loggers:
        if hasattr(logger, "log_image"):
            for key, path in images.items():
                logger.log_image(key=key, images=[str(path)])


def finish_wandb(loggers: list[Logger]) -> None:
    """Close the W&B run so the next run in this process starts a fresh one."""
    if any(type(lg).__name__ == "WandbLogger" for lg in loggers):
        import wandb

        wandb.finish()
