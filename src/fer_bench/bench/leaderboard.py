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
GROUP = ["protocol", "suite", "name", "data", "ckpt", "selection"]
# Faithful (the authors' recipe, test-selected rows) and corrected results never share a table.
PROTOCOLS = {"corrected": "Corrected protocol (selection on a validation split carved from train; test never "
                          "selects)",
             "faithful": "Faithful protocol (the authors' recipe, docs/faithful.md; `best_test_epoch` rows are "
                         "selected on test: optimistic)"}
PROVENANCE = {"data_card": "data", "image_variant": "variant", "splits_hash": "splits", "code_version": "code",
              "config_hash": "config", "init": "init", "precision": "precision"}
INIT_MARK = "†"  # a summary row with a run that starts the paper's pretrained part from random weights (init_note)


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
    """Mean ± std over seeds per suite, run name, data set and checkpoint kind, with a provenance line."""
    table = with_protocol(table)
    table = table.assign(suite=table.get("suite", pd.Series(index=table.index, dtype=object)).fillna(""),
                         name=table.get("name", pd.Series(index=table.index, dtype=object)).fillna(table["method"]))
    metric_cols = [c for c in table.columns if "/" in c]
    rows = []
    for keys, group in table.groupby(GROUP, sort=True):
        row = dict(zip(GROUP, keys, strict=True)) | {"seeds": len(group)}
        if _init_notes(group):
            row["name"] = f"{row['name']} {INIT_MARK}"
        row.update({c: _mean_std(group[c]) for c in metric_cols if group[c].notna().any()})
        rows.append(row | {"provenance": _provenance_line(group)})
    return pd.DataFrame(rows).fillna("")


def with_protocol(table: pd.DataFrame) -> pd.DataFrame:
    """Rows without a protocol (older leaderboards) count as corrected."""
    column = table.get("protocol", pd.Series(index=table.index, dtype=object))
    return table.assign(protocol=column.fillna("corrected"))


def protocol_sections(summary_table: pd.DataFrame, level: str = "##") -> list[str]:
    """Markdown parts: one labelled summary table per protocol present (corrected first)."""
    parts = []
    for name in sorted(summary_table["protocol"].unique(), key=lambda p: (p != "corrected", p)):
        rows = summary_table[summary_table["protocol"] == name].drop(columns="protocol")
        parts += [f"{level} {PROTOCOLS.get(name, name)}", "", rows.to_markdown(index=False), ""]
    return parts


def _init_notes(rows: pd.DataFrame) -> list[str]:
    return sorted({str(n) for n in rows["init_note"].dropna() if str(n)}) if "init_note" in rows else []


def init_footnotes(table: pd.DataFrame) -> str:
    """The footnote explaining the summary's marked rows (empty when none is marked)."""
    return "\n".join(f"{INIT_MARK} {note}" for note in _init_notes(table))


def render(table: pd.DataFrame) -> str:
    """Markdown: the summary (mean ± std over seeds) and every row."""
    parts = ["# fer-bench leaderboard", "", "## Summary (mean ± std over seeds)", "",
             *protocol_sections(summary(table), "###"), init_footnotes(table), "", "## All runs", "",
             table.drop(columns=["run_dir"], errors="ignore").to_markdown(index=False, floatfmt=".4f"), ""]
    return "\n".join(parts)
