"""The statistical sections of ``fer-bench report``, built from the kept test predictions.

- Paired comparisons: within each (suite, data set), every pair of runs tested on the same test split
  (``bench.compare``): differences with paired-bootstrap intervals, McNemar, Welch over seeds, Holm, verdicts and
  the smallest detectable accuracy difference. Written to ``results/paired_<suite>_<data>.{csv,md}`` too.
- Ranks over data sets or domains: per suite, the Friedman test and a critical-difference diagram
  (``bench.ranks``) over the data sets and cross-domain targets of the leaderboard, or over the domains inside
  one test set (``domain`` column of the predictions) when those are more; ``results/cd_<suite>.png``.
- ``group_by=<column>``: per-group accuracy and UAR with intervals, gaps and statistical parity
  (``bench.fairness``) of every run group.

Groups whose predictions are missing or whose runs disagree on the test split are named, never an error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from fer_bench.results import compare, fairness, prediction_sets, ranks


@dataclass
class Sections:
    parts: list[str] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    images: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "runs"


def _sides(table: pd.DataFrame, runs_dir: Path, select: Callable[[pd.DataFrame], pd.DataFrame],
           notes: list[str]) -> dict[tuple[str, str], list[prediction_sets.Side]]:
    """The predictions of every (suite, name, data) group, by (suite, data); groups that cannot be read are noted."""
    found: dict[tuple[str, str], list[prediction_sets.Side]] = {}
    for (suite, name, data), group in table.groupby(["suite", "name", "data"], sort=True):
        chosen = select(group).drop_duplicates("run_id").sort_values("seed")
        if chosen.empty:
            continue
        try:
            dirs = [prediction_sets.run_dir_of(r, runs_dir) for _, r in chosen.iterrows()]
            s = prediction_sets.side(name, dirs, chosen["ckpt"].iloc[0], chosen["seed"].tolist())
        except (FileNotFoundError, ValueError) as e:
            notes.append(f"{suite + '/' if suite else ''}{name} on {data}: {e}")
            continue
        found.setdefault((suite, data), []).append(s)
    return found


def _paired(sides: list[prediction_sets.Side], title: str, results_dir: Path, out: Sections) -> None:
    by_split: dict[str, list[prediction_sets.Side]] = {}
    for s in sides:
        by_split.setdefault(s.test_hash, []).append(s)
    for test_hash, same in by_split.items():
        if len(same) < 2:
            continue
        table = compare.compare(same)
        stem = results_dir / f"paired_{_slug(title)}{'_' + test_hash if len(by_split) > 1 else ''}"
        table.to_csv(stem.with_suffix(".csv"), index=False)
        text = compare.markdown(table)
        stem.with_suffix(".md").write_text(f"# Paired comparison: {title}\n\n{text}\n")
        out.tables[f"paired/{title}"] = table
        out.parts += [f"### {title} (test split {test_hash})\n", text, ""]
    if len(by_split) > 1:
        out.notes.append(f"{title}: runs were tested on {len(by_split)} different test splits "
                         f"({', '.join(by_split)}); only runs on the same split are compared")


def _suite_scores(table: pd.DataFrame, select: Callable[[pd.DataFrame], pd.DataFrame]) -> pd.DataFrame:
    """Mean test accuracy over seeds: rows data sets and cross-domain targets (``xdom:<target>``), columns runs."""
    chosen = pd.concat([select(g) for _, g in table.groupby(["name", "data"], sort=True)])
    scores = chosen.groupby(["data", "name"])["test/acc"].mean().unstack("name")
    xdom = [c for c in chosen.columns if c.startswith("xdom/") and c.endswith("/acc") and chosen[c].notna().any()]
    if xdom:
        targets = chosen.groupby("name")[xdom].mean().T
        targets.index = [f"xdom:{c.split('/')[1]}" for c in targets.index]
        scores = pd.concat([scores, targets])
    return scores


def _ranks(table: pd.DataFrame, sides: dict, select, results_dir: Path, out_md: Path, out: Sections) -> None:
    for suite, group in table.groupby("suite", sort=True):
        scores = _suite_scores(group, select)
        by_domain = [ranks.domain_scores(v) for (s, _), v in sides.items() if s == suite]
        domain = max(by_domain, key=lambda d: len(d.dropna()), default=pd.DataFrame())
        if len(domain.dropna()) > len(scores.dropna()):
            scores, over = domain, "domains of the test set"
        else:
            over = "data sets and cross-domain targets"
        title = f"suite {suite}" if suite else "runs outside suites"
        result = ranks.rank_test(scores, results_dir / f"cd_{_slug(suite)}.png", title)
        link = None
        if result.png:
            out.images[f"cd/{title}"] = result.png
            link = os.path.relpath(result.png, out_md.parent)
        out.parts += [f"### {title} (over {over})\n", result.markdown(link), ""]


def build(table: pd.DataFrame, runs_dir: Path, results_dir: Path, out_md: Path,
          select: Callable[[pd.DataFrame], pd.DataFrame], group_by: str | None = None) -> Sections:
    out = Sections()
    sides = _sides(table, runs_dir, select, out.notes)
    out.parts += ["## Paired comparisons (same test images)\n",
                  "Differences A − B in points with 95 % paired-bootstrap intervals (2,000 resamples); p of "
                  "McNemar's exact test for accuracy, of the bootstrap otherwise; Holm-adjusted over pairs.\n"]
    before = len(out.parts)
    for (suite, data), group in sides.items():
        _paired(group, f"{suite + '/' if suite else ''}{data}", results_dir, out)
    if len(out.parts) == before:
        out.parts += ["No two runs with kept predictions share a test split.", ""]
    out.parts += ["## Ranks over data sets and domains (Friedman, Nemenyi)\n"]
    _ranks(table, sides, select, results_dir, out_md, out)
    if group_by:
        out.parts += [f"## Per-group results by `{group_by}`\n"]
        for (suite, data), group in sides.items():
            for s in group:
                label = f"{suite + '/' if suite else ''}{s.label} on {data}"
                try:
                    per_group, summary = fairness.group_results(prediction_sets.attach_columns(s, [group_by]), group_by)
                except (FileNotFoundError, ValueError) as e:
                    out.notes.append(f"group_by={group_by}, {label}: {e}")
                    continue
                out.tables[f"group_by/{label}"] = per_group
                out.parts += [fairness.markdown(per_group, summary | {"run": label})]
    return out
