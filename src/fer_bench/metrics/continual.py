"""Class-incremental metrics over an accuracy matrix R (Lopez-Paz & Ranzato, NeurIPS 2017; Chaudhry et al., ECCV 2018).

R[i][j] = accuracy on the test images of task j's classes after step i, defined for j ≤ i (step 0 = base
task). R is a list of rows (row i holding i + 1 values) or a square array with NaN above the diagonal.
``group_sizes`` (test images per task) make A_i sample-weighted; without them every task weighs the same.
With a single step, BWT and both forgetting variants are undefined and returned as NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Matrix = Sequence[Sequence[float]] | np.ndarray


def _matrix(R: Matrix) -> np.ndarray:
    """R as a float (T, T) array, NaN above the diagonal; rejects missing values on or below it."""
    T = len(R)
    out = np.full((T, T), np.nan)
    for i, row in enumerate(R):
        row = np.asarray(row, dtype=float)
        if row.ndim != 1 or len(row) < i + 1 or (len(row) > i + 1 and not np.isnan(row[i + 1:]).all()):
            raise ValueError(f"row {i} of the accuracy matrix must hold {i + 1} values (NaN after them)")
        out[i, : i + 1] = row[: i + 1]
    if T == 0 or np.isnan(out[np.tril_indices(T)]).any():
        raise ValueError("the accuracy matrix must be non-empty with no NaN on or below the diagonal")
    return out


def incremental_accuracies(R: Matrix, group_sizes: Sequence[float] | None = None) -> np.ndarray:
    """A_i, the accuracy over all classes seen after step i (sample-weighted when group sizes are given)."""
    R = _matrix(R)
    T = len(R)
    w = np.ones(T) if group_sizes is None else np.asarray(group_sizes, dtype=float)
    if w.shape != (T,) or (w <= 0).any():
        raise ValueError(f"group_sizes must hold {T} positive values, got {group_sizes!r}")
    return np.array([np.dot(R[i, : i + 1], w[: i + 1]) / w[: i + 1].sum() for i in range(T)])


def avg_inc_acc(R: Matrix, group_sizes: Sequence[float] | None = None) -> float:
    """Average incremental accuracy (1/T) Σ_i A_i (iCaRL)."""
    return float(incremental_accuracies(R, group_sizes).mean())


def final_acc(R: Matrix, group_sizes: Sequence[float] | None = None) -> float:
    """A_{T−1}: accuracy over all classes after the last step."""
    return float(incremental_accuracies(R, group_sizes)[-1])


def final_task_acc(R: Matrix) -> float:
    """mean_j R[T−1][j], the GEM-style final average task accuracy."""
    return float(_matrix(R)[-1].mean())


def bwt(R: Matrix) -> float:
    """Backward transfer (1/(T−1)) Σ_{j<T−1} (R[T−1][j] − R[j][j]) (Lopez-Paz & Ranzato)."""
    R = _matrix(R)
    if len(R) < 2:
        return float("nan")
    return float(np.mean(R[-1, :-1] - np.diag(R)[:-1]))


def forgetting(R: Matrix) -> float:
    """Chaudhry forgetting (1/(T−1)) Σ_{j<T−1} (max_{l<T−1} R[l][j] − R[T−1][j])."""
    R = _matrix(R)
    if len(R) < 2:
        return float("nan")
    return float(np.mean(np.nanmax(R[:-1, :-1], axis=0) - R[-1, :-1]))


def forgetting_first(R: Matrix) -> float:
    """Avalanche forgetting: mean_{j<T−1} (R[j][j] − R[T−1][j]) (value after training minus last value), i.e.
    −BWT, computed as written so that no forgetting is 0.0, never the −0.0 a negation gives."""
    R = _matrix(R)
    if len(R) < 2:
        return float("nan")
    return float(np.mean(np.diag(R)[:-1] - R[-1, :-1]))


def summary(R: Matrix, group_sizes: Sequence[float] | None = None) -> dict[str, float]:
    """All continual-learning metrics under their fer-bench keys."""
    return {
        "cl/avg_inc_acc": avg_inc_acc(R, group_sizes),
        "cl/final_acc": final_acc(R, group_sizes),
        "cl/final_task_acc": final_task_acc(R),
        "cl/bwt": bwt(R),
        "cl/forgetting": forgetting(R),
        "cl/forgetting_first": forgetting_first(R),
    }


def new_acc(R: Matrix) -> float:
    """Mean over steps i ≥ 1 of R[i][i]: accuracy on each step's new classes right after learning them."""
    R = _matrix(R)
    if len(R) < 2:
        return float("nan")
    return float(np.mean(np.diag(R)[1:]))


def old_new_accuracies(R: Matrix, group_sizes: Sequence[float] | None = None) -> list[tuple[float, float]]:
    """Per step i ≥ 1: (accuracy on the classes of tasks < i, sample-weighted when group sizes are given;
    accuracy on task i's classes) — PyCIL's old/new split."""
    R = _matrix(R)
    w = np.ones(len(R)) if group_sizes is None else np.asarray(group_sizes, dtype=float)
    return [(float(np.dot(R[i, :i], w[:i]) / w[:i].sum()), float(R[i, i])) for i in range(1, len(R))]

