"""Downstream tasks on frozen features (Savchenko, arXiv 2403.11590): heads, targets, post-processing and metrics.

- expr: embedding → Dense(128, relu) → Dense(C, softmax) (``hidden=0``: logistic regression); CE with Keras
  class_weight n_max/n_c; best epoch by val accuracy; argmax.
- va: scores → Dense(2, tanh), l2 = 1/batch; loss 1 − (CCC_V + CCC_A)/2; best epoch by val mean CCC.
- au: embedding → Dense(128, relu) → Dense(A, sigmoid); weighted BCE (w0, w1 per AU); best epoch by val loss;
  per-AU thresholds from 0.1…0.9 tuned on val.
- intensity: embedding → Dense(1, sigmoid); loss 1 − CCC; best epoch by val CCC. Not in HSEmotion's ABAW-6 code
  (it has no intensity task); it follows the VA head.
- ce: zero-shot, no head: a compound's score is the mean of its two parents' probabilities (``compound``).

Heads are selected, and AU thresholds tuned, on the val split only; the test split is only scored. With
``frames=true``, predictions are smoothed per video (δ = ``delta``) before thresholds are tuned and metrics computed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from fer_bench import labels as L
from fer_bench.methods.multitask.downstream import compound, keras, smoothing
from fer_bench.methods.multitask.net import class_weights
from fer_bench.metrics import abaw, accuracy, ccc, ccc_loss, macro_f1, tune_thresholds

TASK_DEFAULTS: dict[str, dict] = {
    "expr": {"inputs": "embedding", "hidden": 128, "epochs": 10, "batch_size": 256, "l2": 0.0, "delta": 50},
    "va": {"inputs": "scores", "hidden": 0, "epochs": 5, "batch_size": 1024, "l2": None, "delta": 50},
    "au": {"inputs": "embedding", "hidden": 128, "epochs": 5, "batch_size": 512, "l2": 0.0, "delta": 3},
    "intensity": {"inputs": "embedding", "hidden": 0, "epochs": 20, "batch_size": 256, "l2": 0.0, "delta": 0},
    "ce": {"inputs": "scores", "hidden": 0, "epochs": 1, "batch_size": 1, "l2": 0.0, "delta": 0},  # no head
}
INPUTS = ("embedding", "scores")


@dataclass(frozen=True)
class Settings:
    """A ``HeadConfig`` with every task default filled in."""

    task: str
    inputs: str
    hidden: int
    epochs: int
    batch_size: int
    lr: float
    l2: float
    frames: bool
    delta: int
    aus: tuple[int, ...]
    au_presence: float
    compounds: str
    seed: int


def resolve(cfg, prefix: str = "") -> Settings:
    """Settings from a ``HeadConfig`` (or mapping), defaults from ``TASK_DEFAULTS``; errors name the key."""
    def key(name: str) -> str:
        return f"{prefix}.{name}" if prefix else name

    if cfg["task"] not in TASK_DEFAULTS:
        raise ValueError(f"{key('task')}={cfg['task']!r}; allowed: {', '.join(TASK_DEFAULTS)}")
    values = {k: (cfg[k] if cfg[k] is not None else v) for k, v in TASK_DEFAULTS[cfg["task"]].items()}
    if values["inputs"] not in INPUTS:
        raise ValueError(f"{key('inputs')}={values['inputs']!r}; allowed: {', '.join(INPUTS)}")
    for name in ("epochs", "batch_size"):
        if values[name] < 1:
            raise ValueError(f"{key(name)}={values[name]} must be >= 1")
    if values["l2"] is None:  # HSEmotion's VA head: l2 = 1 / batch size
        values["l2"] = 1.0 / values["batch_size"]
    return Settings(task=cfg["task"], lr=cfg["lr"], frames=cfg["frames"], aus=tuple(cfg["aus"]),
                    au_presence=cfg["au_presence"], compounds=cfg["compounds"], seed=cfg["seed"], **values)


# targets -----------------------------------------------------------------------------------------------------------


def au_targets(values: np.ndarray, presence: float) -> tuple[np.ndarray, np.ndarray]:
    """Binary AU targets (N, A) (label >= ``presence``) and the rows whose AUs are all known (finite, >= 0)."""
    known = (np.isfinite(values) & (values >= 0)).all(axis=1)
    return (np.nan_to_num(values, nan=0.0) >= presence).astype(np.int64), known


def va_known(values):
    """Rows (numpy or torch) whose valence and arousal are both known (finite, >= −1; ABAW's missing mark is −5)."""
    finite = torch.isfinite(values) if isinstance(values, Tensor) else np.isfinite(values)
    return (finite & (values >= -1)).all(1)


def table_targets(s: Settings, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The task's targets from a features table and the mask of rows that have them."""
    if s.task == "expr":
        y = table["label"].to_numpy(np.int64)
        return y, y >= 0
    if s.task == "va":
        y = table[["valence", "arousal"]].to_numpy(np.float64) if {"valence", "arousal"} <= set(table) else None
        _require(y is not None, "va needs valence and arousal columns")
        return y, va_known(y)
    if s.task == "au":
        missing = [f"au{a}" for a in s.aus if f"au{a}" not in table]
        _require(not missing, f"aus: {', '.join(missing)} not in the features table")
        return au_targets(table[[f"au{a}" for a in s.aus]].to_numpy(np.float64), s.au_presence)
    if s.task == "intensity":
        _require("intensity" in table, "intensity needs an intensity column")
        y = table[["intensity"]].to_numpy(np.float64)
        return y, np.isfinite(y[:, 0])
    position = {cid: i for i, cid in enumerate(compound.compound_set(s.compounds))}
    y = np.array([position.get(int(c), -1) if pd.notna(c) else -1 for c in table["compound"]], dtype=np.int64)
    return y, y >= 0


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(f"downstream task: {message}")


# heads -------------------------------------------------------------------------------------------------------------


def _objective(s: Settings, y_train: Tensor, num_outputs: int):
    """(loss, validation score) of a task; statistics (class and AU weights) come from the training targets."""
    if s.task == "expr":
        weight = class_weights(torch.bincount(y_train, minlength=num_outputs))
        return (lambda z, y: keras.class_weighted_ce(z, y, weight),
                lambda z, y: float(accuracy(z, y)))
    if s.task == "au":
        w0, w1 = keras.au_weights(y_train)
        return (lambda z, y: keras.weighted_bce(z, y, w0, w1),
                lambda z, y: -float(keras.weighted_bce(z, y, w0, w1)))
    if s.task == "va":
        return keras.va_ccc_loss, lambda z, y: float(ccc(torch.tanh(z), y).mean())
    return (lambda z, y: ccc_loss(torch.sigmoid(z), y).mean(),
            lambda z, y: float(ccc(torch.sigmoid(z), y).mean()))


def train_head(s: Settings, x_train: Tensor, y_train: Tensor, x_val: Tensor, y_val: Tensor,
               num_outputs: int) -> keras.DenseHead:
    """Fit the task's head on the training rows, keeping the best epoch on the validation rows."""
    with torch.random.fork_rng(devices=[]):  # a seeded init that leaves the caller's random state alone
        torch.manual_seed(s.seed)
        head = keras.DenseHead(x_train.shape[1], num_outputs, s.hidden)
    loss_fn, score_fn = _objective(s, y_train, num_outputs)
    keras.fit(head, loss_fn, (x_train, y_train), (x_val, y_val), score_fn, s.epochs, s.batch_size, s.lr, s.l2,
              s.seed)
    return head


@torch.no_grad()
def predict(s: Settings, head: keras.DenseHead, x: Tensor) -> Tensor:
    """The head's activated outputs: class probabilities (expr), V/A in [−1, 1], AU or intensity in [0, 1]."""
    raw = head(x)
    if s.task == "expr":
        return raw.softmax(dim=1)
    return torch.tanh(raw) if s.task == "va" else torch.sigmoid(raw)


# metrics -----------------------------------------------------------------------------------------------------------


def scores_of(s: Settings, pred: Tensor, y: Tensor, num_classes: int, thresholds: Tensor | None = None) -> dict:
    """The task's metrics on rows with targets."""
    if s.task in ("expr", "ce"):
        return {"acc": float(accuracy(pred, y)), "f1": float(macro_f1(pred, y, num_classes, all_classes=True))}
    if s.task == "va":
        return abaw.va_score(pred, y)
    if s.task == "au":
        return {"au_f1": abaw.au_score((pred >= thresholds).long(), y),
                "au_f1_thr05": abaw.au_score((pred >= 0.5).long(), y),
                "au_f1_all_pos": abaw.au_score(torch.ones_like(y), y)}
    return {"ccc": float(ccc(pred, y)[0]), "mae": float((pred - y).abs().mean())}


def run(table: pd.DataFrame, s: Settings, space_name: str) -> dict:
    """Fit on train, select and tune on val, score val and test; returns ``{"val/<m>": ..., "test/<m>": ...}``."""
    y_all, known = table_targets(s, table)
    split = table["split"].astype("string").fillna("").to_numpy()
    rows = {name: (split == name) & known for name in ("train", "val", "test")}
    for name in (("val", "test") if s.task == "ce" else ("train", "val", "test")):
        _require(rows[name].any(), f"no {name} rows with {s.task} targets")
    scores = np.stack(table["scores"].to_numpy())
    num_classes = len(L.space(space_name))  # the first columns of the scores; valence/arousal follow if present
    _require(scores.shape[1] in (num_classes, num_classes + 2),
             f"scores have {scores.shape[1]} columns; space {space_name} has {num_classes} classes (+ 2 for V/A)")
    y = torch.tensor(y_all)
    y = y.float() if y.is_floating_point() else y
    if s.task == "ce":
        probs = torch.as_tensor(scores[:, :num_classes]).softmax(dim=1).numpy()
        pred = compound.compound_scores(probs, space_name, compound.compound_set(s.compounds))
        if s.frames:
            videos, frames = smoothing.frame_keys(table["path"])
            pred = compound.max_over_faces(pred, np.char.add(videos.astype(str), "#" + frames.astype(str)))
        num_outputs = pred.shape[1]
    else:
        x = torch.as_tensor(np.stack(table[s.inputs].to_numpy()), dtype=torch.float32)
        num_outputs = {"expr": num_classes, "va": 2, "intensity": 1}.get(s.task, len(s.aus))
        head = train_head(s, x[rows["train"]], y[rows["train"]], x[rows["val"]], y[rows["val"]], num_outputs)
        pred = predict(s, head, x).numpy()
    if s.frames and s.delta:
        pred = smoothing.smooth(*smoothing.frame_keys(table["path"]), pred, s.delta)
    pred = torch.as_tensor(pred, dtype=torch.float32)
    thresholds = tune_thresholds(pred[rows["val"]], y[rows["val"]]) if s.task == "au" else None
    out = {}
    for name in ("val", "test"):
        metrics = scores_of(s, pred[rows[name]], y[rows[name]], num_outputs, thresholds)
        out.update({f"{name}/{k}": v for k, v in metrics.items()})
    if thresholds is not None:
        out["au_thresholds"] = dict(zip((f"au{a}" for a in s.aus), thresholds.tolist(), strict=True))
    return out
