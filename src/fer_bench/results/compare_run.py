"""``fer-bench compare A B [C ...]``: groups → paired statistics → ``results/compare_<A>_vs_<B>….{csv,md}``.

A group is a run directory or a leaderboard selector ``[SUITE/]NAME[@DATA]`` (``bench.prediction_sets``); ``suite=``,
``data=`` and ``ckpt=`` narrow every selector. With ``group_by=<column>`` the markdown also holds each group's
per-group table (``bench.fairness``) and the paired accuracy difference within every group value.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pandas as pd

from fer_bench.results import compare, fairness, prediction_sets


def _within(sides: list[prediction_sets.Side], column: str, resamples: int, seed: int) -> pd.DataFrame:
    """The paired accuracy comparison restricted to each value of ``column`` (Holm within each value)."""
    values = sides[0].frame[column].astype("string").fillna("<missing>").to_numpy()
    tables = []
    for value in sorted(set(values)):
        rows = values == value
        subset = [replace(s, frame=s.frame[rows].reset_index(drop=True), preds=s.preds[:, rows]) for s in sides]
        table = compare.compare(subset, resamples, seed)
        tables.append(table[table["metric"] == "acc"].assign(**{column: value}))
    return pd.concat(tables, ignore_index=True)


def run(args: list[str], keys: dict[str, str]) -> tuple[Path, Path, str]:
    """Compare the groups named in ``args``; returns the CSV, the markdown and the markdown text."""
    results, ckpt = Path(keys["results"]), keys["ckpt"]
    table = prediction_sets.named_table(results)
    resolved = [prediction_sets.resolve(a, table, Path(keys["runs"]), ckpt, keys["data"] or None,
                                    keys["suite"] or None) for a in args]
    labels = [label for label, _, _ in resolved]
    if len(set(labels)) < len(labels):  # the same run name in two suites or data sets: use the full selectors
        labels = list(args)
    sides = [prediction_sets.side(label, dirs, ckpt, seeds) for label, (_, dirs, seeds) in
             zip(labels, resolved, strict=True)]
    resamples, seed = int(keys["bootstrap"]), int(keys["seed"])
    result = compare.compare(sides, resamples, seed)
    text = [f"# Paired comparison ({ckpt} checkpoints)", "",
            "Differences A − B in points with 95 % paired-bootstrap intervals "
            f"({resamples} resamples over the same test images, seed {seed}); p of McNemar's exact test for "
            "accuracy, of the bootstrap otherwise; Welch's t-test over seeds where both sides have two or more; "
            "Holm-adjusted over pairs.", "", compare.markdown(result), ""]
    if column := keys["group_by"]:
        sides = [prediction_sets.attach_columns(s, [column]) for s in sides]
        text += [f"## By `{column}`", ""]
        for s in sides:
            per_group, summary = fairness.group_results(s, column, resamples, seed)
            text.append(fairness.markdown(per_group, summary))
        within = _within(sides, column, resamples, seed)
        text += [f"Paired accuracy difference within each `{column}` value:", "",
                 "\n".join(f"- {column} = {row[column]}: {row['verdict']}" for _, row in within.iterrows()), ""]
        result = pd.concat([result.assign(**{column: "(all)"}), within], ignore_index=True)
    stem = keys["out"] or str(results / ("compare_" + "_vs_".join(re.sub(r"[^A-Za-z0-9_.-]+", "-", a).strip("-")
                                                                  for a in labels)))
    csv, md = Path(stem).with_suffix(".csv"), Path(stem).with_suffix(".md")
    csv.parent.mkdir(parents=True, exist_ok=True)
    result.to_csv(csv, index=False)
    md.write_text("\n".join(text))
    return csv, md, "\n".join(text)
