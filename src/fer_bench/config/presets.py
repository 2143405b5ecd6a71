"""Trainer presets: named ``trainer.*`` bundles (``trainer_presets.yaml`` beside this module), applied with
``trainer.preset=NAME`` after the experiment and its profile, before the other command-line values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from fer_bench.config.choices import refusal
from fer_bench.config.errors import ConfigError
from fer_bench.config.merge import merge

PRESETS_FILE = Path(__file__).with_name("trainer_presets.yaml")


def _load() -> dict[str, dict[str, Any]]:
    presets = OmegaConf.to_container(OmegaConf.load(PRESETS_FILE))
    if not isinstance(presets, dict) or not all(isinstance(v, dict) for v in presets.values()):
        raise ConfigError(f"{PRESETS_FILE} must map preset names to trainer.* keys")
    return presets


TRAINER_PRESETS: dict[str, dict[str, Any]] = _load()


def apply_preset(cfg: DictConfig, preset: str | None) -> DictConfig:
    """``cfg`` with the trainer preset ``preset`` merged in (unchanged for ``None``)."""
    if preset is None:
        return cfg
    if preset not in TRAINER_PRESETS:
        raise ConfigError(refusal("trainer.preset", preset, list(TRAINER_PRESETS))
                          + f"\n  unknown preset; presets: {', '.join(TRAINER_PRESETS)} ({PRESETS_FILE})")
    return merge(cfg, {"trainer": TRAINER_PRESETS[preset]}, f"trainer.preset={preset}")
