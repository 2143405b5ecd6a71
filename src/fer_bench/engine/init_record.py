"""Initialisation and precision as part of a result.

``init``: ``random``, or one ``component=<file name>@<sha256 prefix>`` / ``component=timm-hub:<model>`` per pretrained
component, in the order the method's config class declares them (``init_sources``), e.g.
``trunk=ir50.pth@1a2b3c4d; net=qcs_rafdb.pt@5e6f7a8b``. ``precision``: the Lightning trainer's precision.
``init_note``: set when the paper starts from pretrained weights (``paper_init``) and this run starts the paper's
pretrained part from random weights on real faces; the leaderboard and the report mark such rows.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_warn
from omegaconf import DictConfig, OmegaConf

from fer_bench.config.init_sources import InitSource
from fer_bench.methods import spec_of

SHA_PREFIX = 8


@functools.cache
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_prefix(path: str | Path) -> str:
    """The first characters of a file's sha256, computed once per file (and again only if it changes)."""
    stat = os.stat(path)
    return _sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)[:SHA_PREFIX]


def _source_value(cfg: DictConfig, source: InitSource) -> str | None:
    """How one component was initialised, or None when randomly."""
    weights = OmegaConf.select(cfg, source.weights) if source.weights else None
    if weights:
        return f"{Path(weights).name}@{sha256_prefix(weights) if Path(weights).is_file() else 'missing'}"
    if source.hub and OmegaConf.select(cfg, source.hub):
        return f"timm-hub:{OmegaConf.select(cfg, source.hub_model)}{source.hub_tag}"
    return None


def _method_config(cfg: DictConfig) -> type:
    return spec_of(cfg.method.name).config


def _sources(cfg: DictConfig) -> tuple[InitSource, ...] | None:
    return getattr(_method_config(cfg), "init_sources", None)


def describe_init(cfg: DictConfig) -> str:
    """The ``init`` column of a run (``undeclared`` for a method whose config class lists no ``init_sources``)."""
    sources = _sources(cfg)
    if sources is None:
        return "undeclared"
    parts = [f"{s.component}={value}" for s in sources if (value := _source_value(cfg, s)) is not None]
    return "; ".join(parts) or "random"


def init_note(cfg: DictConfig) -> str:
    """``random init; paper uses ...`` for a run on real faces whose paper-pretrained components are all random."""
    paper_init = getattr(_method_config(cfg), "paper_init", "")
    if not paper_init or cfg.data.reader == "synthetic":
        return ""
    if any(_source_value(cfg, s) is not None for s in _sources(cfg) or () if s.paper):
        return ""
    return f"random init; paper uses {paper_init}"


def warn_if_random_init(cfg: DictConfig) -> None:
    """Warn (once, rank 0) when a run deviates from its paper by starting from random weights on real faces."""
    note = init_note(cfg)
    if note:
        keys = ", ".join(k for s in _sources(cfg) or () if s.paper for k in (s.weights, s.hub) if k)
        rank_zero_warn(f"{cfg.method.name} on {cfg.data.name}: {note}; results are not comparable to the paper's. "
                       f"Set {keys} to start from pretrained weights.", category=UserWarning)


def fitted_precision(method, cfg: DictConfig) -> str:
    """The precision of the trainer that last fitted ``method`` (the configured one if none did in this process,
    e.g. a continual run resumed after its last step)."""
    try:
        return str(method.trainer.precision)
    except RuntimeError:
        return str(cfg.trainer.precision)


def result_facts(cfg: DictConfig, precision: str) -> dict[str, str]:
    """The ``init``, ``init_note`` and ``precision`` entries of metrics.json and of every leaderboard row."""
    return {"init": describe_init(cfg), "init_note": init_note(cfg), "precision": str(precision)}
