"""Per-group results: accuracy and UAR per value of a record column, the gap between groups, statistical parity.

- Grouping is fairlearn's ``MetricFrame`` (accuracy, balanced accuracy = UAR over the classes present in the
  group, image count), with ``difference()`` and ``ratio()`` between the best and worst group.
- Each group's 95 % percentile interval comes from a seeded bootstrap over the group's images
  (``metrics.intervals``, averaged over seeds as in ``bench.compare``).
- Multiclass statistical parity as the FG 2024 fair and consistent affect-analysis protocol computes it
  (dkollias/Fair-Consistent-Affect-Analysis, ``fair/holisticai.py``, after holistic-ai's
  ``multiclass_statistical_parity``): per group, the rate of each predicted class (classes = those predicted);
  for every pair of groups half the L1 distance of the two rate vectors; their mean (or max). 0 is parity.

With several seeds every figure is the mean over seeds.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame, count
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from fer_bench.metrics import intervals
from fer_bench.results.compare import seed_mean
from fer_bench.results.prediction_sets import Side


def statistical_parity(groups, y_pred, aggregation: str = "mean") -> float:
    """Mean (or max) over group pairs of half the L1 distance between the groups' predicted-class rates."""
    if aggregation not in ("mean", "max"):
        raise ValueError(f"aggregation={aggregation!r}: mean or max")
    rates = pd.crosstab(pd.Series(np.asarray(groups)), pd.Series(np.asarray(y_pred)), normalize="index").to_numpy()
    if len(rates) < 2:
        return float("nan")
    upper = np.triu_indices(len(rates), k=1)
    distances = (np.abs(rates[:, None, :] - rates[None, :, :]).sum(axis=2) / 2)[upper]
    return float(distances.max() if aggregation == "max" else distances.mean())


def _frame(target, pred, groups) -> MetricFrame:
    with warnings.catch_warnings():  # balanced accuracy warns when a group lacks a predicted class
        warnings.simplefilter("ignore", UserWarning)
        return MetricFrame(metrics={"acc": accuracy_score, "uar": balanced_accuracy_score, "n": count},
                           y_true=target, y_pred=pred, sensitive_features=pd.Series(groups, name="group"))


def group_results(s: Side, column: str, resamples: int = 2000, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """``(per-group table, summary)`` of ``s`` grouped by record column ``column``.

    The table: one row per group with ``n``, ``acc``, ``acc_lo``, ``acc_hi``, ``uar``, ``uar_lo``, ``uar_hi``;
    the summary: largest gap and ratio (worst / best) of acc and uar between groups, statistical parity (mean and
    max over group pairs)."""
    if column not in s.frame:
        raise ValueError(f"{s.label}: no column {column!r}; columns are {', '.join(s.frame.columns)}")
    groups = s.frame[column].astype("string").fillna("<missing>").to_numpy()
    target = s.target
    frames = [_frame(target, p, groups) for p in s.preds]
    table = sum(f.by_group[["acc", "uar"]].astype(float) for f in frames) / len(frames)
    table.insert(0, "n", frames[0].by_group["n"].astype(int))
    for metric in ("acc", "uar"):
        lo, hi = [], []
        for g in table.index:
            rows = np.flatnonzero(groups == g)
            idx = rows[intervals.draw_indices(len(rows), resamples, seed)]
            draws = seed_mean(target[idx], s.preds[:, idx], s.num_classes)[metric]
            low, high = np.percentile(draws, [2.5, 97.5])
            lo.append(low)
            hi.append(high)
        table.insert(table.columns.get_loc(metric) + 1, f"{metric}_lo", lo)
        table.insert(table.columns.get_loc(metric) + 2, f"{metric}_hi", hi)
    summary = {"run": s.label, "column": column, "groups": len(table), "seeds": len(frames)}
    for metric in ("acc", "uar"):
        summary[f"{metric}_gap"] = float(np.mean([f.difference()[metric] for f in frames]))
        summary[f"{metric}_ratio"] = float(np.mean([f.ratio()[metric] for f in frames]))
    for how in ("mean", "max"):
        summary[f"stat_parity_{how}"] = float(np.mean([statistical_parity(groups, p, how) for p in s.preds]))
    return table.rename_axis(column).reset_index(), summary


def markdown(table: pd.DataFrame, summary: dict) -> str:
    column = summary["column"]
    shown = pd.DataFrame({column: table[column], "n": table["n"],
                          **{m: [f"{100 * v:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]" for v, lo, hi in
                                 zip(table[m], table[f"{m}_lo"], table[f"{m}_hi"], strict=True)]
                             for m in ("acc", "uar")}})
    return "\n".join([
        f"**{summary['run']}** by `{column}` ({summary['seeds']} seed(s); 95 % bootstrap intervals)", "",
        shown.to_markdown(index=False), "",
        f"Largest gap between groups: acc {100 * summary['acc_gap']:.1f} points (worst/best ratio "
        f"{summary['acc_ratio']:.3f}), UAR {100 * summary['uar_gap']:.1f} points (ratio {summary['uar_ratio']:.3f}). "
        f"Statistical parity (predicted-class rates, 0 = parity): mean {summary['stat_parity_mean']:.3f}, "
        f"max {summary['stat_parity_max']:.3f} over group pairs.", ""])
