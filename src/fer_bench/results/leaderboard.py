"""results/leaderboard.csv (one row per run and checkpoint kind) and its markdown rendering.

Appends take an exclusive file lock and replace the file atomically, so two runs finishing at once both land.
A run's rows replace its earlier rows of the same checkpoint kind: a resumed run killed after (or during) its
append lands once.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from fer_bench.atomic import atomic_write_text
from fer_bench.faults import fault_point

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


def read(results_dir: Path) -> pd.DataFrame:
    path = Path(results_dir) / "leaderboard.csv"
    return pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=LEAD_COLUMNS)


def append(results_dir: Path, rows: list[dict]) -> Path:
    """Add rows to the leaderboard (replacing rows of the same run and checkpoint kind) and re-render the
    markdown; safe under concurrent writers."""
    results_dir = Path(results_dir)
    path = results_dir / "leaderboard.csv"
    new = pd.DataFrame(rows)
    with _locked(path):
        table = read(results_dir)
        again = pd.MultiIndex.from_frame(table[["run_id", "ckpt"]].astype(str)).isin(
            pd.MultiIndex.from_frame(new[["run_id", "ckpt"]].astype(str)))
        table = pd.concat([table[~again], new], ignore_index=True)
        ordered = LEAD_COLUMNS + sorted(c for c in table.columns if c not in LEAD_COLUMNS)
        table = table[ordered]
        if "fold" in table:  # an id, kept integral next to rows without folds (NaN would make it float)
            table["fold"] = table["fold"].astype("Int64")
        atomic_write_text(path, table.to_csv(index=False))
        fault_point("leaderboard")
        atomic_write_text(results_dir / "leaderboard.md", render(table))
    return path


def _interval_cell(value: float, low: float, high: float) -> str:
    """``0.9120 [0.9010, 0.9230]``: a test value with its bootstrap interval (the value alone without bounds)."""
    if pd.isna(value):
        return ""
    if pd.isna(low) or pd.isna(high):
        return f"{value:.4f}"
    return f"{value:.4f} [{low:.4f}, {high:.4f}]"


def _bounds(column: str, columns) -> tuple[str, str] | None:
    lo, hi = f"{column}_lo", f"{column}_hi"
    return (lo, hi) if lo in columns and hi in columns else None


def _is_bound(column: str, columns) -> bool:
    return column.endswith(("_lo", "_hi")) and column[:-3] in columns


def with_intervals(table: pd.DataFrame) -> pd.DataFrame:
    """Every metric that has ``<metric>_lo`` / ``_hi`` columns shown as one cell with its interval."""
    out = table.drop(columns=[c for c in table.columns if _is_bound(c, table.columns)])
    for column in out.columns:
        bounds = _bounds(column, table.columns)
        if bounds:
            lo, hi = bounds
            out[column] = [_interval_cell(v, low, high)
                           for v, low, high in zip(table[column], table[lo], table[hi], strict=True)]
    return out


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
    """Mean ± std over seeds (and subject folds) per suite, run name, data set and checkpoint kind (a single run:
    its value with its bootstrap interval), with a provenance line; rows of fold runs also count their folds."""
    table = with_protocol(table)
    table = table.assign(suite=table.get("suite", pd.Series(index=table.index, dtype=object)).fillna(""),
                         name=table.get("name", pd.Series(index=table.index, dtype=object)).fillna(table["method"]))
    metric_cols = [c for c in table.columns if "/" in c and not _is_bound(c, table.columns)]
    rows = []
    for keys, group in table.groupby(GROUP, sort=True):
        row = dict(zip(GROUP, keys, strict=True)) | {"seeds": len(group)}
        if _init_notes(group):
            row["name"] = f"{row['name']} {INIT_MARK}"
        if "fold" in group and group["fold"].notna().any():
            row |= {"seeds": group["seed"].nunique(), "folds": group["fold"].nunique()}
        row.update({c: mean_std(group[c]) for c in metric_cols if group[c].notna().any()})
        if len(group) == 1:  # one run: its bootstrap interval instead of a spread over seeds
            row.update({c: _interval_cell(*group[[c, *_bounds(c, group.columns)]].iloc[0]) for c in metric_cols
                        if group[c].notna().any() and _bounds(c, group.columns)})
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
    """Markdown: the summary (mean ± std over seeds and folds) per protocol and every row, test values with their
    95 % intervals."""
    parts = ["# fer-bench leaderboard", "",
             "## Summary (mean ± std over seeds and folds; one run: value [bootstrap interval])", "",
             *protocol_sections(summary(table), "###"), init_footnotes(table), "",
             "## All runs (value [bootstrap interval])", "",
             with_intervals(table.drop(columns=["run_dir"], errors="ignore")).to_markdown(index=False,
                                                                                         floatfmt=".4f"), ""]
    return "\n".join(parts)
