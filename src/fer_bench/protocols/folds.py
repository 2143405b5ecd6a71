"""Subject-independent k-fold benchmarking (e.g. the 10-fold CK+ protocol).

``data.folds=K`` without ``data.fold``: ``bench`` runs fold f = 0 … K−1 as the test fold (its subjects held out,
val carved from the other subjects), every seed per fold, one run directory per fold and seed
(``<name>-fold<f>-s<seed>-…``). Each run's ``metrics.json`` and leaderboard rows carry ``fold``; the leaderboard
summary groups the fold rows of a recipe into one mean ± std, and ``summary_lines`` prints the same on the console.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from fer_bench.results.leaderboard import mean_std

METRICS = ("acc", "uar", "f1")


def every_fold(cfg: DictConfig) -> bool:
    """True when the data set is split into subject folds and no single fold was asked for."""
    return cfg.data.folds is not None and cfg.data.fold is None


def fold_configs(cfg: DictConfig) -> list[DictConfig]:
    """One copy of ``cfg`` per test fold."""
    configs = []
    for fold in range(cfg.data.folds):
        fold_cfg = cfg.copy()
        fold_cfg.data.fold = fold
        configs.append(fold_cfg)
    return configs


def summary_lines(run_dirs: list[Path]) -> list[str]:
    """Console lines: per recipe (the run name before ``-fold<f>``), the test metrics of the best and last
    checkpoints as mean ± std over its fold runs among ``run_dirs`` (every fold and seed); nothing for runs
    without folds."""
    runs: dict[str, list[dict]] = {}
    for run_dir in run_dirs:
        path = Path(run_dir) / "metrics.json"
        metrics = json.loads(path.read_text()) if path.is_file() else {}
        if "fold" in metrics and "best" in metrics:
            runs.setdefault(metrics["run_id"].rsplit("-fold", 1)[0], []).append(metrics)
    lines = []
    for name, group in runs.items():
        folds, seeds = len({m["fold"] for m in group}), len({m["seed"] for m in group})
        lines.append(f"{name}: mean ± std over {len(group)} runs ({folds} subject folds × {seeds} "
                     "seed(s))")
        for kind, label in (("best", "best (val-selected)"), ("last", "last")):
            cells = [f"{k} {mean_std(pd.Series([m[kind][f'test/{k}'] for m in group]))}" for k in METRICS]
            lines.append(f"  {label:<20} " + "  ".join(cells))
    return lines
