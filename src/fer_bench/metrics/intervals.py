"""Bootstrap confidence intervals of test metrics, vectorised (numpy and ``scipy.stats.bootstrap``; no torch).

Every metric here is a function of **additive per-image statistics**: a classification metric of the confusion
matrix, i.e. of the sum of one-hot (true, predicted) cells; Lin's CCC of the six sums n, Σx, Σy, Σx², Σy², Σxy. A
resample is then a vector of weights over the resampling units (how often each unit was drawn), and its statistics
are one matrix product ``weights @ unit_stats``: 2,000 resamples of a 3,000-image test set are a (2000, 3000) weight
matrix, built by one ``bincount``. Units are images, or clusters of images that are not independent (the frames of
one video, the images of one subject): a cluster's statistics are the sum of its images', and the cluster bootstrap
draws whole clusters (Field & Welsh 2007, "Bootstrapping clustered data").

``scipy.stats.bootstrap`` draws the unit indices (seeded), calls the vectorised statistic and forms the interval:
``BCa`` (bias-corrected and accelerated, Efron 1987) by default; above ``BCA_MAX_UNITS`` units its jackknife is too
costly and the percentile interval is used (the result names the method that was used).

A paired comparison of two methods on the same test images is the same machinery: stack both methods' statistics
column-wise and let ``value`` return the difference of their metrics.

Metric conventions are those of ``metrics/classification.py`` (scikit-learn's): UAR averages recall over the classes
present in the (resampled) targets, macro F1 over the classes present in targets or predictions.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.stats

METHODS = ("bca", "percentile")
BCA_MAX_UNITS = 10_000  # BCa's jackknife costs units² · statistics; beyond this the percentile interval is used
MAX_BATCH_ELEMENTS = 2**23  # resamples per statistic call × units: bounds the weight matrix (64 MiB of float64)


# classification metrics of confusion matrices (..., C, C), rows = true class -----------------------------------------
def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Confusion matrices (..., C, C) of class-id arrays (..., n): one per leading index, by one ``bincount``."""
    y_true, y_pred = np.broadcast_arrays(np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64))
    lead, n = y_true.shape[:-1], y_true.shape[-1]
    cells = num_classes * num_classes
    flat = (y_true * num_classes + y_pred).reshape(-1, n)
    offsets = np.arange(flat.shape[0], dtype=np.int64)[:, None] * cells
    counts = np.bincount((flat + offsets).ravel(), minlength=flat.shape[0] * cells)
    return counts.reshape(*lead, num_classes, num_classes)


def accuracy(cm: np.ndarray) -> np.ndarray:
    """Trace over total."""
    return np.trace(cm, axis1=-2, axis2=-1) / cm.sum(axis=(-2, -1))


def uar(cm: np.ndarray) -> np.ndarray:
    """Mean recall over the classes present in the targets."""
    support = cm.sum(axis=-1)
    present = support > 0
    recall = np.divide(np.diagonal(cm, axis1=-2, axis2=-1), support, out=np.zeros(support.shape), where=present)
    return recall.sum(axis=-1) / present.sum(axis=-1)


def macro_f1(cm: np.ndarray) -> np.ndarray:
    """Mean F1 = 2·TP / (2·TP + FP + FN) over the classes present in targets or predictions."""
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    denom = cm.sum(axis=-1) + cm.sum(axis=-2)  # 2·TP + FN + FP
    present = denom > 0
    f1 = np.divide(2 * tp, denom, out=np.zeros(denom.shape), where=present)
    return f1.sum(axis=-1) / present.sum(axis=-1)


CLASSIFICATION: dict[str, Callable[[np.ndarray], np.ndarray]] = {"acc": accuracy, "uar": uar, "f1": macro_f1}


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> dict[str, np.ndarray]:
    """Every classification metric of class-id arrays (..., n), one value per leading index, from one confusion
    count (e.g. rows of resampled images ``y[idx]``, ``idx`` from :func:`draw_indices`)."""
    cm = confusion_counts(y_true, y_pred, num_classes)
    return {name: fn(cm) for name, fn in CLASSIFICATION.items()}


def draw_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """``(resamples, n)`` indices of ``n`` items drawn with replacement (seeded): the same draws serve every side
    of a paired bootstrap."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def metric_fns(num_classes: int) -> dict[str, Callable[..., np.ndarray]]:
    """Metric name → vectorised ``fn(y_true, y_pred, probs=None)`` of class-id arrays (..., n), one value per
    leading index (e.g. rows of resampled indices ``y[idx]``). ``probs`` is accepted for a uniform signature."""
    def bind(fn):
        return lambda y_true, y_pred, probs=None: fn(confusion_counts(y_true, y_pred, num_classes))

    return {name: bind(fn) for name, fn in CLASSIFICATION.items()}


def classification_stats(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-image additive statistics (n, C²): the one-hot confusion cell of each image."""
    stats = np.zeros((len(y_true), num_classes * num_classes))
    stats[np.arange(len(y_true)), np.asarray(y_true) * num_classes + np.asarray(y_pred)] = 1.0
    return stats


def cm_of(stats: np.ndarray, num_classes: int) -> np.ndarray:
    """Confusion matrices (..., C, C) from summed ``classification_stats`` (..., C²)."""
    return stats.reshape(*stats.shape[:-1], num_classes, num_classes)


# concordance correlation coefficient --------------------------------------------------------------------------------
def ccc_stats(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-image additive statistics (n, 6) of the population CCC: 1, x, y, x², y², xy; zero rows where the target
    is unknown (NaN), so those images count for nothing."""
    x, y = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    known = np.isfinite(y) & np.isfinite(x)
    x, y = np.where(known, x, 0.0), np.where(known, y, 0.0)
    return np.stack([known.astype(np.float64), x, y, x * x, y * y, x * y], axis=-1)


def ccc_of(sums: np.ndarray) -> np.ndarray:
    """Population CCC from summed ``ccc_stats`` (..., 6) (= metrics.regression.CCC)."""
    n, sx, sy, sxx, syy, sxy = np.moveaxis(sums, -1, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx, my = sx / n, sy / n
        vx, vy, cov = sxx / n - mx * mx, syy / n - my * my, sxy / n - mx * my
        return 2 * cov / (vx + vy + (mx - my) ** 2)


# the bootstrap ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Interval:
    """Two-sided interval bounds per output (m,), the method used for each output, the number of units and the
    level."""

    low: np.ndarray
    high: np.ndarray
    methods: tuple[str, ...]
    units: int
    level: float

    def label(self, names: list[str] | None = None) -> str:
        """The method of all outputs in one label: ``BCa``, or e.g. ``BCa (percentile: uar)`` naming the outputs
        (by ``names`` or position) that fell back."""
        main = max(self.methods, key=self.methods.count)
        names = names or [str(i) for i in range(len(self.methods))]
        others = {m: [n for n, used in zip(names, self.methods, strict=True) if used == m] for m in self.methods}
        notes = [f"{m}: {', '.join(ns)}" for m, ns in others.items() if m != main]
        return main + (f" ({'; '.join(notes)})" if notes else "")


def unit_stats(stats: np.ndarray, clusters: np.ndarray | None) -> np.ndarray:
    """Statistics per resampling unit: the images themselves, or the sum over each cluster's images."""
    if clusters is None:
        return np.asarray(stats, dtype=np.float64)
    _, codes = np.unique(np.asarray(clusters), return_inverse=True)
    summed = np.zeros((codes.max() + 1, stats.shape[1]))
    np.add.at(summed, codes, stats)
    return summed


def resample_weights(idx: np.ndarray, units: int) -> np.ndarray:
    """How often each unit appears in each row of drawn unit indices (..., m) → (..., units) float64."""
    flat = idx.reshape(-1, idx.shape[-1])
    offsets = np.arange(flat.shape[0], dtype=np.int64)[:, None] * units
    counts = np.bincount((flat + offsets).ravel(), minlength=flat.shape[0] * units)
    return counts.reshape(*idx.shape[:-1], units).astype(np.float64)


class _ResampledSums:
    """The summed statistics of resamples given as rows of drawn unit indices (..., m) → (..., d).

    A block with few distinct rows (image-level confusion cells: at most C²) is summed as ``counts of its row codes
    @ distinct rows``, a small bincount; the other blocks (continuous statistics such as CCC's) share one weight
    matrix over the units."""

    def __init__(self, blocks: list[np.ndarray]):
        units = len(blocks[0])
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (columns, unit → row code, rows)
        dense_columns, dense = [], []
        start = 0
        for block in blocks:
            columns = np.arange(start, start + block.shape[1])
            start += block.shape[1]
            rows, codes = np.unique(block, axis=0, return_inverse=True)
            if 4 * len(rows) <= units:
                self.parts.append((columns, codes.reshape(-1), rows))
            else:
                dense_columns.append(columns)
                dense.append(block)
        if dense:
            self.parts.append((np.concatenate(dense_columns), np.arange(units), np.concatenate(dense, axis=1)))
        self.width = start

    def __call__(self, idx: np.ndarray) -> np.ndarray:
        out = np.empty((*idx.shape[:-1], self.width))
        for columns, codes, rows in self.parts:
            out[..., columns] = resample_weights(codes[idx], len(rows)) @ rows
        return out


def bootstrap_interval(stats: np.ndarray | list[np.ndarray], value: Callable[[np.ndarray], np.ndarray], *,
                       clusters: np.ndarray | None = None, n_resamples: int = 2000, seed: int = 0,
                       level: float = 0.95, method: str = "bca") -> Interval:
    """Interval of ``value(summed stats)`` from a seeded bootstrap over images (or over ``clusters``).

    ``stats``: per-image additive statistics (n, d), or a list of column blocks of them (keep one-hot confusion
    cells in a block of their own: a block with few distinct rows is resampled through them); ``value``: (..., d)
    sums → (m, ...) metric values (m outputs from one resampling). Outputs whose bootstrap distribution is
    constant (e.g. every image right) get the point value as both bounds. Where BCa is undefined (the point value
    outside the whole bootstrap distribution, or every jackknife value equal, e.g. the UAR of a model that predicts
    one class), that output gets the percentile interval of the same resamples. With fewer than two units the
    interval is undefined (NaN).
    """
    if method not in METHODS:
        raise ValueError(f"unknown interval method {method!r}; choose one of {', '.join(METHODS)}")
    blocks = [unit_stats(np.asarray(b, dtype=np.float64), clusters) for b in (
        stats if isinstance(stats, list | tuple) else [stats])]
    k = len(blocks[0])
    point = np.atleast_1d(value(np.concatenate([b.sum(axis=0) for b in blocks])))
    if k < 2:
        nan = np.full(point.shape, np.nan)
        return Interval(nan, nan, ("none",) * len(point), k, level)
    used = "BCa" if method == "bca" and k <= BCA_MAX_UNITS else "percentile"

    resampled_sums = _ResampledSums(blocks)

    def statistic(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        return value(resampled_sums(np.moveaxis(idx, axis, -1)))

    def run(**kwargs):
        return scipy.stats.bootstrap((np.arange(k),), statistic, vectorized=True, confidence_level=level,
                                     batch=max(1, MAX_BATCH_ELEMENTS // k), **kwargs)

    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", scipy.stats.DegenerateDataWarning)
        result = run(n_resamples=n_resamples, method=used, rng=np.random.default_rng(seed))
        low, high = (np.atleast_1d(np.asarray(b, dtype=np.float64)).copy() for b in result.confidence_interval)
        distribution = np.atleast_2d(result.bootstrap_distribution)
        constant = np.ptp(distribution, axis=-1) == 0
        low[constant], high[constant] = point[constant], point[constant]
        undefined = (np.isnan(low) | np.isnan(high)) & ~constant & np.isfinite(distribution).all(axis=-1)
        methods = tuple("percentile" if u else used for u in undefined)
        if undefined.any():  # percentile bounds of the same resamples (n_resamples=0: none drawn anew)
            fallback = run(n_resamples=0, method="percentile", bootstrap_result=result)
            for bound, values in zip((low, high), fallback.confidence_interval, strict=True):
                bound[undefined] = np.atleast_1d(values)[undefined]
    return Interval(low, high, methods, k, level)
