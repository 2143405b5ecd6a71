"""results/leaderboard.csv (one row per run and checkpoint kind) and its markdown rendering.

Appends take an exclusive file lock and replace the file atomically, so two runs finishing at once both land.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

LEAD_COLUMNS = ["run_id", "method", "data", "seed", "ckpt", "selection", "test/acc", "test/uar", "test/f1"]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(path.suffix + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def read(results_dir: Path) -> pd.DataFrame:
    path = Path(results_dir) / "leaderboard.csv"
    return pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=LEAD_COLUMNS)


def append(results_dir: Path, rows: list[dict]) -> Path:
    """Add rows to the leaderboard and re-render the markdown; safe under concurrent writers."""
    results_dir = Path(results_dir)
    path = results_dir / "leaderboard.csv"
    with _locked(path):
        table = pd.concat([read(results_dir), pd.DataFrame(rows)], ignore_index=True)
        ordered = LEAD_COLUMNS + sorted(c for c in table.columns if c not in LEAD_COLUMNS)
        table = table[ordered]
        _atomic_write(path, table.to_csv(index=False))
        _atomic_write(results_dir / "leaderboard.md", render(table))
    return path


def _mean_std(values: pd.Series) -> str:
    values = values.dropna()
    if values.empty:
        return ""
    if len(values) == 1:
        return f"{values.iloc[0]:.4f}"
    return f"{values.mean():.4f} ± {values.std(ddof=1):.4f}"


def render(table: pd.DataFrame) -> str:
    """Markdown: a summary (mean ± std over seeds per method, data and checkpoint) and every row."""
    metric_cols = [c for c in table.columns if "/" in c]
    summary = []
    for (method, data, ckpt, selection), group in table.groupby(["method", "data", "ckpt", "selection"], sort=True):
        row = {"method": method, "data": data, "ckpt": ckpt, "selection": selection, "seeds": len(group)}
        row.update({c: _mean_std(group[c]) for c in metric_cols if group[c].notna().any()})
        summary.append(row)
    parts = ["# fer-bench leaderboard", "", "## Summary (mean ± std over seeds)", "",
             pd.DataFrame(summary).to_markdown(index=False), "", "## All runs", "",
             table.to_markdown(index=False, floatfmt=".4f"), ""]
    return "\n".join(parts)
