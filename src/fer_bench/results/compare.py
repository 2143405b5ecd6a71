"""Paired comparison of groups tested on the same test images: is a difference real?

For every pair of groups and every metric (``acc``, ``uar``, ``f1``):

- the difference of the metric (mean over each side's seeds) with a 95 % percentile interval from a paired
  bootstrap over test images: every resample draws the same images for both sides and all their seeds (seeded);
  its two-sided p-value is the share of resampled differences at least as far from the observed one as the
  observed one is from 0 (the bootstrap shifted to the null, ``(1 + count) / (1 + resamples)``; Davison &
  Hinkley 1997, §4.4);
- for accuracy, McNemar's exact test: a two-sided binomial test of the discordant images (right on one side
  only) at 1/2 (McNemar 1947). With several seeds it is computed for every seed the sides share (or for seeds
  paired in order) and the row shows the largest p: the difference must hold for every seed pair;
- with two or more seeds on both sides, Welch's t-test over the per-seed values (unequal variances; seeds are
  independent trainings, not pairs);
- Holm's step-down correction over the pairs of one metric when more than two groups are compared;
- the smallest accuracy difference the test set can detect (alpha 0.05, power 0.8) for the observed discordance
  ψ, from Connor's sample size for paired proportions (Connor 1987, Biometrics 43:207–211):
  n δ² = (z_{1-α/2} √ψ + z_{1-β} √(ψ − δ²))², solved for δ.

The verdict of a pair's row reads "qcs > baseline: +1.8 acc, 95 % CI +0.9…+2.7, p = 0.001" (points; p of
McNemar for accuracy, of the bootstrap otherwise, Holm-adjusted) or "no detectable difference".
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
from scipy import optimize, stats

from fer_bench.metrics import intervals
from fer_bench.results.prediction_sets import Side, check_same_test_set

ALPHA = 0.05
POWER = 0.8


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[int, int, float]:
    """``(b, c, p)``: images right only for A, right only for B, and the exact two-sided p-value."""
    b = int(np.sum(correct_a & ~correct_b))
    c = int(np.sum(~correct_a & correct_b))
    return b, c, (stats.binomtest(b, b + c, 0.5).pvalue if b + c else 1.0)


def min_detectable_difference(n: int, discordance: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest accuracy difference δ (fraction) McNemar's test detects on ``n`` images whose share of discordant
    images is ``discordance`` (Connor 1987); NaN when no δ ≤ ψ is detectable (or ψ is 0)."""
    psi = float(discordance)
    if psi <= 0 or n <= 0:
        return float("nan")
    z_a, z_b = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)

    def gap(delta: float) -> float:
        return np.sqrt(n) * delta - z_a * np.sqrt(psi) - z_b * np.sqrt(max(psi - delta**2, 0.0))

    return float(optimize.brentq(gap, 0.0, psi)) if gap(psi) >= 0 else float("nan")


def _seed_pairs(a: Side, b: Side) -> list[tuple[int, int]]:
    """Row indices of the seeds both sides share; seeds paired in order when they share none."""
    shared = [(i, b.seeds.index(s)) for i, s in enumerate(a.seeds) if s is not None and s in b.seeds]
    return shared or list(zip(range(len(a.seeds)), range(len(b.seeds)), strict=False))


def _welch(x: list[float], y: list[float]) -> float:
    if len(x) < 2 or len(y) < 2:
        return float("nan")
    if np.ptp(x) == 0 and np.ptp(y) == 0:
        return 1.0 if x[0] == y[0] else 0.0
    return float(stats.ttest_ind(x, y, equal_var=False).pvalue)


def seed_mean(target: np.ndarray, preds: np.ndarray, num_classes: int) -> dict[str, np.ndarray]:
    """The classification metrics averaged over seeds: ``preds`` is ``(seeds, ..., n)``, ``target`` ``(..., n)``
    (e.g. the images of every resample, ``target[idx]`` and ``preds[:, idx]``)."""
    per_seed = [intervals.classification_metrics(target, p, num_classes) for p in preds]
    return {m: np.mean([s[m] for s in per_seed], axis=0) for m in intervals.CLASSIFICATION}


def compare_pair(a: Side, b: Side, resamples: int = 2000, seed: int = 0) -> list[dict]:
    """One row per metric: A − B with its paired-bootstrap interval and p, McNemar for acc, Welch over seeds."""
    check_same_test_set(a, b)
    target, n, classes = a.target, len(a.target), max(a.num_classes, b.num_classes)
    idx = intervals.draw_indices(n, resamples, seed)
    boot_a, boot_b = (seed_mean(target[idx], s.preds[:, idx], classes) for s in (a, b))
    seeds_a, seeds_b = ([intervals.classification_metrics(target, p, classes) for p in s.preds] for s in (a, b))
    pairs = _seed_pairs(a, b)
    tests = [mcnemar_exact(a.preds[i] == target, b.preds[j] == target) for i, j in pairs]
    rows = []
    for metric in intervals.CLASSIFICATION:
        per_seed_a, per_seed_b = [float(m[metric]) for m in seeds_a], [float(m[metric]) for m in seeds_b]
        va, vb = float(np.mean(per_seed_a)), float(np.mean(per_seed_b))
        diff = va - vb
        draws = boot_a[metric] - boot_b[metric]
        lo, hi = np.percentile(draws, [2.5, 97.5])
        row = {"a": a.label, "b": b.label, "metric": metric, "n": n, "seeds_a": len(a.preds),
               "seeds_b": len(b.preds), "a_value": va, "b_value": vb, "diff": diff, "ci_lo": float(lo),
               "ci_hi": float(hi), "resamples": resamples,
               "p_bootstrap": float((1 + np.sum(np.abs(draws - diff) >= abs(diff) - 1e-12)) / (1 + resamples)),
               "p_seeds_welch": _welch(per_seed_a, per_seed_b)}
        if metric == "acc":
            b_only, c_only, p = max(tests, key=lambda t: t[2])
            row |= {"mcnemar_a_only": b_only, "mcnemar_b_only": c_only, "p_mcnemar": p,
                    "mde_acc": min_detectable_difference(n, np.mean([(t[0] + t[1]) / n for t in tests]))}
        row["p"] = row["p_mcnemar"] if metric == "acc" else row["p_bootstrap"]
        rows.append(row)
    return rows


def _fmt_p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def verdict(row: pd.Series, alpha: float = ALPHA) -> str:
    """One plain sentence for a row (differences in points)."""
    diff, lo, hi = 100 * row["diff"], 100 * row["ci_lo"], 100 * row["ci_hi"]
    if not row["p_holm"] < alpha:
        return (f"{row['a']} vs {row['b']}: no detectable difference in {row['metric']} ({diff:+.1f}, 95 % CI "
                f"{lo:+.1f}…{hi:+.1f}, {_fmt_p(row['p_holm'])})")
    better, worse = (row["a"], row["b"]) if diff > 0 else (row["b"], row["a"])
    if diff < 0:
        diff, lo, hi = -diff, -hi, -lo
    seeds = (f"; over seeds {row['seeds_a']} vs {row['seeds_b']}: Welch {_fmt_p(row['p_seeds_holm'])}"
             if not np.isnan(row["p_seeds_holm"]) else "")
    return (f"{better} > {worse}: {diff:+.1f} {row['metric']}, 95 % CI {lo:+.1f}…{hi:+.1f}, "
            f"{_fmt_p(row['p_holm'])}{seeds}")


def holm(p: pd.Series) -> pd.Series:
    """Holm's step-down adjusted p-values (Holm 1979); NaN stays NaN and is not counted."""
    ok = p.dropna()
    order = np.argsort(ok.to_numpy(), kind="stable")
    ranked = ok.to_numpy()[order] * (len(ok) - np.arange(len(ok)))
    adjusted = np.empty(len(ok))
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(ranked))
    return pd.Series(adjusted, index=ok.index).reindex(p.index)


def compare(sides: list[Side], resamples: int = 2000, seed: int = 0, alpha: float = ALPHA) -> pd.DataFrame:
    """Every pair of ``sides`` (in the order given), one row per metric, Holm-adjusted within each metric."""
    if len(sides) < 2:
        raise ValueError("a comparison needs at least two groups")
    for a, b in combinations(sides, 2):
        check_same_test_set(a, b)
    table = pd.DataFrame([row for a, b in combinations(sides, 2) for row in compare_pair(a, b, resamples, seed)])
    table["p_holm"] = table.groupby("metric")["p"].transform(holm)
    table["p_seeds_holm"] = table.groupby("metric")["p_seeds_welch"].transform(holm)
    table["verdict"] = [verdict(row, alpha) for _, row in table.iterrows()]
    return table


def markdown(table: pd.DataFrame) -> str:
    """The comparison as a markdown table (differences and intervals in points) and the accuracy verdicts."""
    shown = pd.DataFrame({
        "A": table["a"], "B": table["b"], "metric": table["metric"], "n": table["n"],
        "A value": (100 * table["a_value"]).round(2), "B value": (100 * table["b_value"]).round(2),
        "A − B": (100 * table["diff"]).map("{:+.2f}".format),
        "95 % CI": [f"{100 * lo:+.2f}…{100 * hi:+.2f}" for lo, hi in zip(table["ci_lo"], table["ci_hi"],
                                                                        strict=True)],
        "p bootstrap": table["p_bootstrap"].map("{:.4f}".format),
        "p McNemar": table.get("p_mcnemar", pd.Series(np.nan, index=table.index)).map(
            lambda p: "" if pd.isna(p) else f"{p:.4g}"),
        "p seeds (Welch)": table["p_seeds_welch"].map(lambda p: "" if pd.isna(p) else f"{p:.4f}"),
        "p Holm": table["p_holm"].map("{:.4g}".format),
    })
    acc = table[table["metric"] == "acc"]
    lines = [shown.to_markdown(index=False), "", *[f"- {v}" for v in acc["verdict"]]]
    for _, row in acc.iterrows():
        mde = row["mde_acc"]
        lines.append(f"- {row['a']} vs {row['b']}: smallest detectable accuracy difference on {row['n']} images: "
                     + (f"{100 * mde:.1f} points" if not np.isnan(mde) else "none within the observed discordance")
                     + " (McNemar, α = 0.05, power 0.8, observed discordance; Connor 1987).")
    return "\n".join(lines)
