"""Methods over several data sets or domains: average ranks, the Friedman test and a critical-difference diagram.

Following Demšar (2006, "Statistical comparisons of classifiers over multiple data sets", JMLR 7:1–30): the
methods are ranked within each data set or domain (1 = highest accuracy, ties share the mean rank), the
Friedman test asks whether the average ranks differ, and the Nemenyi post-hoc test (scikit-posthocs) links the
methods whose ranks differ by less than the critical difference CD = q_α √(k(k+1)/(6N)) in the diagram. The test
needs at least three methods and three data sets or domains; with fewer the result says so and nothing is drawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import scikit_posthocs as sp  # noqa: E402
from scipy import stats  # noqa: E402

from fer_bench.results.prediction_sets import Side  # noqa: E402

MIN_METHODS = 3
MIN_BLOCKS = 3


@dataclass
class RankResult:
    blocks: int
    methods: int
    ranks: pd.Series | None = None  # average rank per method, best first
    friedman_stat: float = float("nan")
    friedman_p: float = float("nan")
    cd: float = float("nan")
    png: Path | None = None
    note: str = ""

    def markdown(self, link: str | None = None) -> str:
        if self.ranks is None:
            return self.note
        table = self.ranks.rename("average rank").rename_axis("method").reset_index()
        lines = [f"Friedman test over {self.blocks} data sets/domains and {self.methods} methods: "
                 f"χ² = {self.friedman_stat:.2f}, p = {self.friedman_p:.4g}; Nemenyi critical difference "
                 f"{self.cd:.2f} ranks (α = 0.05; Demšar 2006).", "", table.to_markdown(index=False, floatfmt=".2f")]
        if link:
            lines += ["", f"![critical-difference diagram]({link})"]
        return "\n".join(lines)


def domain_scores(sides: list[Side], column: str = "domain") -> pd.DataFrame:
    """Accuracy (mean over seeds) of every side on every value of ``column``: rows domains, columns sides."""
    scores = {}
    for s in sides:
        if column not in s.frame:
            continue
        correct = (s.preds == s.target[None, :]).mean(axis=0)
        scores[s.label] = pd.Series(correct).groupby(s.frame[column].astype(str).to_numpy()).mean()
    return pd.DataFrame(scores)


def rank_test(scores: pd.DataFrame, out_png: Path, title: str, alpha: float = 0.05) -> RankResult:
    """Friedman + Nemenyi on ``scores`` (rows: data sets or domains, columns: methods; higher is better) and the
    critical-difference diagram as ``out_png``; incomplete rows are left out."""
    scores = scores.dropna()
    n, k = scores.shape
    if k < MIN_METHODS or n < MIN_BLOCKS:
        return RankResult(n, k, note=f"{title}: {k} method(s) over {n} data set(s)/domain(s) with results for "
                                     f"all; the Friedman test needs at least {MIN_METHODS} methods over at least "
                                     f"{MIN_BLOCKS} data sets or domains, so no critical-difference diagram is "
                                     "drawn.")
    ranks = scores.rank(axis=1, ascending=False).mean().sort_values()
    if (scores.nunique(axis=1) == 1).all():
        return RankResult(n, k, note=f"{title}: the {k} methods tie on each of the {n} data sets/domains, so the "
                                     "Friedman test is undefined (all ranks equal); no critical-difference diagram "
                                     "is drawn.")
    stat, p = stats.friedmanchisquare(*[scores[c].to_numpy() for c in scores.columns])
    q = stats.studentized_range.ppf(1 - alpha, k, np.inf) / np.sqrt(2)
    cd = float(q * np.sqrt(k * (k + 1) / (6 * n)))
    nemenyi = sp.posthoc_nemenyi_friedman(scores.to_numpy())
    nemenyi.index = nemenyi.columns = scores.columns
    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.35 * k))
    sp.critical_difference_diagram(ranks, nemenyi, ax=ax, alpha=alpha)
    ax.set_title(f"{title}: average rank over {n} (Friedman p = {p:.3g}, CD = {cd:.2f})", fontsize=9)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return RankResult(n, k, ranks, float(stat), float(p), cd, out_png)
