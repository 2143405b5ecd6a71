"""The ``method.*`` keys of QCS (Wang et al. 2024; official code: github.com/birdwcp/QCS)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from fer_bench.config.init_sources import InitSource


@dataclass
class CSAConfig:
    variant: str = "sd"
    scope: str = "batch"


@dataclass
class QCSConfig:
    """``trunk_weights``: IR-50 (or timm trunk) weights, e.g. ``ir50.pth``; ``weights``: a whole-network state_dict,
    e.g. a released QCS checkpoint converted with ``fer-bench convert format=qcs``."""

    paper_init: ClassVar[str] = "IR-50 trunk pre-trained on MS-Celeb-1M (ir50.pth)"
    init_sources: ClassVar[tuple[InitSource, ...]] = (InitSource("trunk", "method.trunk_weights"),
                                                      InitSource("net", "method.weights"))

    name: str = "qcs"
    protocol: str = "corrected"
    trunk: str = "ir50"
    trunk_weights: str | None = None
    weights: str | None = None
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
