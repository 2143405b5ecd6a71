"""The ``method.*`` keys of the plain baseline: a backbone and a linear head, cross-entropy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from fer_bench.config.choices import choice
from fer_bench.config.faithful import PROTOCOLS
from fer_bench.config.init_sources import BACKBONE_INIT, InitSource


@dataclass
class BaselineConfig:
    paper_init: ClassVar[str] = ""
    init_sources: ClassVar[tuple[InitSource, ...]] = (BACKBONE_INIT,)

    name: str = "baseline"
    protocol: str = choice(*PROTOCOLS)
    label_smoothing: float = 0.0
