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

LEAD_COLUMNS = ["run_id", "suite", "name", "method", "data", "seed", "ckpt", "selection", "test/acc", "test/uar",
                "test/f1"]
# A summary row: one (suite, run name, data set, checkpoint kind); `name` is the method key unless a suite names
# the run (e.g. two variants of one method).
GROUP = ["suite", "name", "data", "ckpt", "selection"]
PROVENANCE = {"data_card": "data", "image_variant": "variant", "splits_hash": "splits", "code_version": "code",
              "config_hash": "config"}


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
        if "fold" in table:  # an id, kept integral next to rows without folds (NaN would make it float)
            table["fold"] = table["fold"].astype("Int64")
        _atomic_write(path, table.to_csv(index=False))
        _atomic_write(results_dir / "leaderboard.md", render(table))
    return path


def number(value: float, digits: int = 4) -> str:
    """``value`` with ``digits`` decimals; a value that rounds to zero prints as 0.0…, never −0.0…"""
    return f"{round(float(value), digits) + 0.0:.{digits}f}"


def mean_std(values: pd.Series) -> str:
    """``mean ± std`` (sample std) of the values present; the single value alone; "" for none."""
    values = values.dropna()
    if values.empty:
        return ""
    if len(values) == 1:
        return number(values.iloc[0])
    return f"{number(values.mean())} ± {number(values.std(ddof=1))}"


def _provenance_line(group: pd.DataFrame) -> str:
    """``data synthetic · variant … · splits … · code … · config …``; values differing within the group are
    joined with ``,``, which shows a summary mixing data, splits, code or recipes."""
    parts = []
    for column, label in PROVENANCE.items():
        if column in group:
            values = sorted({str(v) for v in group[column].dropna()})
            if values:
                parts.append(f"{label} {','.join(values)}")
    return " · ".join(parts)


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over seeds (and subject folds) per suite, run name, data set and checkpoint kind, with a
    provenance line; rows of fold runs also count their folds."""
    table = table.assign(suite=table.get("suite", pd.Series(index=table.index, dtype=object)).fillna(""),
                         name=table.get("name", pd.Series(index=table.index, dtype=object)).fillna(table["method"]))
    metric_cols = [c for c in table.columns if "/" in c]
    rows = []
    for keys, group in table.groupby(GROUP, sort=True):
        row = dict(zip(GROUP, keys, strict=True)) | {"seeds": len(group)}
        if "fold" in group and group["fold"].notna().any():
            row |= {"seeds": group["seed"].nunique(), "folds": group["fold"].nunique()}
        row.update({c: mean_std(group[c]) for c in metric_cols if group[c].notna().any()})
        rows.append(row | {"provenance": _provenance_line(group)})
    return pd.DataFrame(rows).fillna("")


def render(table: pd.DataFrame) -> str:
    """Markdown: the summary (mean ± std over seeds and folds) and every row."""
    parts = ["# fer-bench leaderboard", "", "## Summary (mean ± std over seeds and folds)", "",
             summary(table).to_markdown(index=False), "", "## All runs", "",
             table.drop(columns=["run_dir"], errors="ignore").to_markdown(index=False, floatfmt=".4f"), ""]
    return "\n".join(parts)
