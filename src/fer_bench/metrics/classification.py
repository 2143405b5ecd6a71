"""Expression classification metrics: accuracy, UAR, macro F1, per-class accuracy, confusion matrix.

Every functional metric accepts ``preds`` as class ids (N,) or scores/logits (N, C) (argmax is taken) and
``target`` as class ids (N,). All of them are computed from the confusion matrix, so the stateful
:class:`ClassificationMetrics` (which only sums confusion matrices) gives the same values.

Conventions (checked against scikit-learn in tests/test_metrics.py):

- ``uar``: mean recall over the classes **present in target** (= ``balanced_accuracy_score`` =
  ``recall_score(average="macro", labels=np.unique(y_true))``); a class predicted but never true is ignored.
- ``macro_f1``: scikit-learn's ``f1_score(average="macro")`` with its default labels, i.e. the mean over
  the classes **present in preds or target**; F1 = 2·TP / (2·TP + FP + FN), so a class predicted but absent
  from target (or true but never predicted) counts 0. ``all_classes=True`` averages over all ``num_classes``
  (a class absent from both counts 0, = ``labels=range(num_classes), zero_division=0``; ABAW's EXPR rule).
- ``per_class_accuracy``: recall of every class, NaN for classes absent from target.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor
from torchmetrics import Metric


def _labels(preds: Tensor, target: Tensor, num_classes: int | None = None) -> tuple[Tensor, Tensor]:
    """Class ids from preds (argmax over dim 1 when scores are given), validated against num_classes."""
    if preds.ndim == target.ndim + 1:
        preds = preds.argmax(dim=1)
    if preds.shape != target.shape or target.ndim != 1:
        raise ValueError(f"expected preds (N,) or (N, C) and target (N,), got {tuple(preds.shape)}, "
                         f"{tuple(target.shape)}")
    preds, target = preds.long(), target.long()
    if num_classes is not None and target.numel():
        lo = torch.minimum(preds.min(), target.min())
        hi = torch.maximum(preds.max(), target.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"class ids must lie in [0, {num_classes}), got range [{int(lo)}, {int(hi)}]")
    return preds, target


def confusion_matrix(preds: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """Confusion matrix (num_classes, num_classes), int64; rows = true class, columns = predicted class."""
    preds, target = _labels(preds, target, num_classes)
    idx = target * num_classes + preds
    return torch.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes)


def accuracy_from_confmat(cm: Tensor) -> Tensor:
    """Overall accuracy (trace / total)."""
    return cm.diag().sum().double().div(cm.sum()).float()


def per_class_from_confmat(cm: Tensor) -> Tensor:
    """Recall of every class (diag / row sums); NaN where the class is absent from target."""
    support = cm.sum(dim=1).double()
    return cm.diag().double().div(support).float()


def uar_from_confmat(cm: Tensor) -> Tensor:
    """Mean recall over classes present in target."""
    return per_class_from_confmat(cm).nanmean()


def f1_from_confmat(cm: Tensor, all_classes: bool = False) -> Tensor:
    """Macro F1 over classes present in preds or target (or over all classes with ``all_classes``)."""
    tp = cm.diag().double()
    denom = 2 * tp + (cm.sum(dim=0) - cm.diag()) + (cm.sum(dim=1) - cm.diag())
    f1 = torch.where(denom > 0, 2 * tp / denom.clamp(min=1), torch.zeros_like(tp))
    if all_classes:
        return f1.mean().float()
    return f1[denom > 0].mean().float()


def accuracy(preds: Tensor, target: Tensor) -> Tensor:
    """Fraction of correct predictions."""
    preds, target = _labels(preds, target)
    return (preds == target).double().mean().float()


def uar(preds: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """Unweighted average recall over the classes present in target."""
    return uar_from_confmat(confusion_matrix(preds, target, num_classes))


def macro_f1(preds: Tensor, target: Tensor, num_classes: int, all_classes: bool = False) -> Tensor:
    """Macro F1 (scikit-learn default labels: classes present in preds or target)."""
    return f1_from_confmat(confusion_matrix(preds, target, num_classes), all_classes=all_classes)


def per_class_accuracy(preds: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """Per-class recall (num_classes,), NaN for classes absent from target."""
    return per_class_from_confmat(confusion_matrix(preds, target, num_classes))


@contextmanager
def synced(metric: Metric) -> Iterator[None]:
    """Gather a metric's states across processes for reading outside ``compute()`` (a no-op without DDP)."""
    with metric.sync_context(dist_sync_fn=metric.dist_sync_fn, should_sync=metric._to_sync,
                             should_unsync=metric._should_unsync):
        yield


class ClassificationMetrics(Metric):
    """Accumulates a confusion matrix (sum state: exact under DDP) and computes ``acc``, ``uar`` and ``f1``.

    ``compute()`` returns ``{"acc", "uar", "f1"}``; ``confmat()`` and ``per_class()`` read the synced matrix.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, num_classes: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.add_state("cm", torch.zeros(num_classes, num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        self.cm += confusion_matrix(preds, target, self.num_classes)

    def compute(self) -> dict[str, Tensor]:
        return {"acc": accuracy_from_confmat(self.cm), "uar": uar_from_confmat(self.cm),
                "f1": f1_from_confmat(self.cm)}

    def confmat(self) -> Tensor:
        """Confusion matrix over all processes (rows = true, columns = predicted)."""
        with synced(self):
            return self.cm.clone()

    def per_class(self) -> Tensor:
        """Per-class recall over all processes, NaN for classes absent from target."""
        return per_class_from_confmat(self.confmat())
