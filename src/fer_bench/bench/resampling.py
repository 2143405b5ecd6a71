"""Classification metrics (``acc``, ``uar``, ``f1``) over many bootstrap resamples of one test set at once.

A resample is a vector of per-image counts (how often each image was drawn), so every metric of every resample
is a few matrix products of the count matrix with one-hot tables: 2,000 resamples of 3,000 images take well
under a second on one core. The metrics follow ``fer_bench.metrics.classification``: ``uar`` is the mean recall
over the classes present in the (resampled) targets, ``f1`` the macro F1 over the classes present in targets or
predictions (scikit-learn's defaults).
"""

from __future__ import annotations

import numpy as np

METRICS = ("acc", "uar", "f1")


def resample_counts(n: int, resamples: int, seed: int) -> np.ndarray:
    """``(resamples, n)`` float32 counts of ``n`` items drawn with replacement ``n`` times per resample (seeded)."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(resamples, n), dtype=np.int32)
    flat = (draws + (np.arange(resamples, dtype=np.int64) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=resamples * n).reshape(resamples, n).astype(np.float32)


def metrics(weights: np.ndarray, target: np.ndarray, pred: np.ndarray, num_classes: int) -> dict[str, np.ndarray]:
    """Every metric of every row of ``weights`` (``(R, n)`` counts; ``np.ones((1, n))`` gives the plain metric)."""
    target = np.asarray(target, dtype=np.int64)
    pred = np.asarray(pred, dtype=np.int64)
    eye = np.eye(num_classes, dtype=np.float32)
    true_1h, pred_1h = eye[target], eye[pred]
    correct = (target == pred).astype(np.float32)
    tp = weights @ (true_1h * correct[:, None])
    support = weights @ true_1h
    predicted = weights @ pred_1h
    total = weights.sum(axis=1)
    present = support > 0
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=present)
    seen = (support + predicted) > 0
    f1 = np.divide(2 * tp, support + predicted, out=np.zeros_like(tp), where=seen)
    return {"acc": (weights @ correct) / total,
            "uar": recall.sum(axis=1) / present.sum(axis=1),
            "f1": f1.sum(axis=1) / seen.sum(axis=1)}


def seed_mean(weights: np.ndarray, target: np.ndarray, preds: np.ndarray, num_classes: int) -> dict[str, np.ndarray]:
    """The metrics averaged over seeds: ``preds`` is ``(seeds, n)``, one row of predictions per seed."""
    per_seed = [metrics(weights, target, p, num_classes) for p in np.atleast_2d(preds)]
    return {m: np.mean([s[m] for s in per_seed], axis=0) for m in METRICS}
