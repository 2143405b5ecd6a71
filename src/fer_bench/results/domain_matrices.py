"""Cross-domain matrices from the leaderboard: source data set x target domain accuracy, written as CSV and PNG."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fer_bench.results import leaderboard
from fer_bench.results.plots import heatmap_png

TARGETS_MEAN = "targets mean"


def domain_matrix(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean accuracy over seeds: rows = training sets, columns = test sets (a training set's own column is its
    test split's ``test/acc``), plus the mean over each row's other sets."""
    cells = []
    for _, row in rows.iterrows():
        scores = {row["train_set"]: row["test/acc"]}
        scores |= {c.split("/")[1]: row[c] for c in rows.columns
                   if c.startswith("xdom/") and c.endswith("/acc") and pd.notna(row[c])}
        cells.append({"train_set": row["train_set"], **scores})
    table = pd.DataFrame(cells).groupby("train_set", sort=False).mean()
    train_sets = list(table.index)
    table = table[train_sets + [c for c in table.columns if c not in train_sets]]
    others = [table.loc[t].drop(t).mean() for t in table.index]
    return table.assign(**{TARGETS_MEAN: others})


def write_matrices(results_dir: Path) -> list[Path]:
    """``xdom_<name>.csv`` and ``.png`` per run name (and suite) of the leaderboard's cross-domain rows."""
    board = leaderboard.read(results_dir)
    if "train_set" not in board:
        return []
    # the selected checkpoint: val-selected (corrected) or test-selected (faithful), never in one matrix
    selected = board["ckpt"].isin(["best", "best_test_epoch"]) & board["train_set"].notna()
    rows = leaderboard.with_protocol(board[selected])
    keys = [k for k in ("suite", "name") if k in rows] or ["method"]
    # a column no row fills is read back as float NaN: make it text before filling the gaps
    rows = rows.assign(**{k: rows[k].astype("string").fillna("").astype(str) for k in keys})
    written = []
    for key, group in rows.groupby([*keys, "protocol"]):
        label = "_".join(part for part in key[:-1] if part) + ("_faithful" if key[-1] == "faithful" else "")
        matrix = domain_matrix(group)
        csv = Path(results_dir) / f"xdom_{label}.csv"
        matrix.to_csv(csv, float_format="%.4f")
        title = f"{label}: test accuracy (mean of {len(group)} run(s))"
        written += [csv, heatmap_png(matrix, csv.with_suffix(".png"), title, "test set", "training set")]
    return written
