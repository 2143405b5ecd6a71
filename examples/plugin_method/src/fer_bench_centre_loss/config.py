"""The ``method.*`` keys of the centre-loss baseline (torch-free: fer-bench validates a command line with it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from fer_bench.config.init_sources import BACKBONE_INIT, InitSource


@dataclass
class CentreLossConfig:
    paper_init: ClassVar[str] = ""  # the paper trains its face CNN from scratch
    init_sources: ClassVar[tuple[InitSource, ...]] = (BACKBONE_INIT,)

    name: str = "centre_loss"
    protocol: str = "corrected"  # every method has it: corrected (select on val) | faithful
    lam: float = 0.01  # λ, the weight of the centre loss beside cross-entropy
    alpha: float = 0.5  # α, the rate at which class centres move towards their batch features (0 < α <= 1)


def check(cfg) -> None:
    """Refuse values the method cannot train with (``MethodSpec.check``)."""
    m = cfg.method
    if m.lam < 0:
        raise ValueError(f"method.lam={m.lam}: the centre-loss weight must be >= 0")
    if not 0 < m.alpha <= 1:
        raise ValueError(f"method.alpha={m.alpha}: the centre update rate must lie in (0, 1]")
    if cfg.optim.sam.enabled:
        raise ValueError("optim.sam.enabled: method=centre_loss moves its class centres inside training_step, "
                         "so a step that recomputes the loss (SAM) would move them again; use a plain optimiser")
