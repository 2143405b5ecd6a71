"""``fer-bench bench``: every seed and every subject fold of one recipe, by the method's loop (fit or scenario)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from fer_bench.engine.runner import train_one
from fer_bench.methods import spec_of
from fer_bench.protocols import folds


def train(cfg: DictConfig, test: bool = True) -> Path:
    """``fer-bench train``: one seed by the method's loop (a scenario tests every step as it goes: ``test`` is moot)."""
    if spec_of(cfg.method.name).loop == "scenario":
        from fer_bench.engine import scenario

        return scenario.run(cfg)
    return train_one(cfg, test=test)


def bench(cfg: DictConfig, resume: Path | None = None, resume_ckpt: Path | None = None) -> list[Path]:
    """Train and test every seed in ``cfg.seeds`` and every subject fold (``protocols/folds.py``); a resumed run:
    its one seed and fold, from ``resume_ckpt``."""
    if spec_of(cfg.method.name).loop == "scenario":  # a scenario of steps per seed (= class order): its own loop
        from fer_bench.engine import scenario

        return scenario.bench(cfg, resume)
    if resume is None and folds.every_fold(cfg):
        return [run_dir for fold_cfg in folds.fold_configs(cfg) for run_dir in bench(fold_cfg)]
    run_dirs = []
    for seed in cfg.seeds:
        seed_cfg = cfg.copy()
        seed_cfg.seed = int(seed)
        run_dirs.append(train_one(seed_cfg, resume=resume, resume_ckpt=resume_ckpt))
    return run_dirs
