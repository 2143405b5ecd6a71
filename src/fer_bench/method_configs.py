"""Per-method config schemas (``method.*`` keys), kept free of heavy imports so configs validate instantly.

Each method file in ``methods/`` reads its block from ``cfg.method``; the registry below maps the method key to
its schema. ``protocol``: ``corrected`` selects checkpoints on a validation split carved from train;
``faithful`` reproduces the paper's protocol (e.g. per-epoch test accuracy), flagged in the leaderboard.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class BaselineConfig:
    name: str = "baseline"
    protocol: str = "corrected"
    label_smoothing: float = 0.0


@dataclass
class CSAConfig:
    variant: str = "sd"
    scope: str = "batch"


@dataclass
class QCSConfig:
    name: str = "qcs"
    protocol: str = "corrected"
    trunk: str = "ir50"
    trunk_weights: str | None = None
    trunk_out_indices: list[int] = field(default_factory=lambda: [1, 2, 3])
    image_size: int = 224
    dim: int = 768
    heads: int = 8
    base_depth: int = 2
    cross_depth: int = 1
    cross_dropout: float = 0.0
    branches: int = 4
    anchors: str = "shuffle"
    negatives: str = "frequency"
    epoch_fraction: float = 1.0
    csa: CSAConfig = field(default_factory=CSAConfig)


METHOD_CONFIGS: dict[str, type] = {
    "baseline": BaselineConfig,
    "qcs": QCSConfig,
}
