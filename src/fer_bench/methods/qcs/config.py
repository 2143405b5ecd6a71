"""The ``method.*`` keys of QCS (Wang et al. 2024; official code: github.com/birdwcp/QCS)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from fer_bench.config.choices import choice
from fer_bench.config.faithful import PROTOCOLS
from fer_bench.config.init_sources import InitSource

CSA_VARIANTS = ("sd", "s", "d", "sdpa")  # qcs/csa.py: the CSA form and its ablations
CSA_SCOPES = ("batch", "sample")


@dataclass
class CSAConfig:
    variant: str = choice(*CSA_VARIANTS)
    scope: str = choice(*CSA_SCOPES)


@dataclass
class QCSConfig:
    """``trunk_weights``: IR-50 (or timm trunk) weights, e.g. ``ir50.pth``; ``weights``: a whole-network state_dict,
    e.g. a released QCS checkpoint converted with ``fer-bench convert format=qcs``."""

    paper_init: ClassVar[str] = "IR-50 trunk pre-trained on MS-Celeb-1M (ir50.pth)"
    init_sources: ClassVar[tuple[InitSource, ...]] = (InitSource("trunk", "method.trunk_weights"),
                                                      InitSource("net", "method.weights"))

    name: str = "qcs"
    protocol: str = choice(*PROTOCOLS)
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
    anchors: str = choice("shuffle", "balanced")  # data/samplers.py ANCHOR_MODES
    negatives: str = choice("frequency", "balanced")  # NEGATIVE_MODES
    epoch_fraction: float = 1.0
    csa: CSAConfig = field(default_factory=CSAConfig)
