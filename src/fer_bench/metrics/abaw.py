"""ABAW challenge scores (6th ABAW, arXiv 2402.19344), with the challenge's missing-label sentinels dropped.

- VA: P_VA = (CCC_V + CCC_A)/2, population CCC; frames whose valence or arousal target is −5 (any value
  below −1) are ignored; predictions are clipped to [−1, 1] (spec quirk 4).
- EXPR: macro F1 over **all** ``num_classes`` classes (a class never predicted counts 0); target −1 ignored.
- AU: mean F1 over the AUs; frames with any target −1 ignored.
- Combined: P_MTL = P_VA + P_EXPR + P_AU. The spec lists the three ABAW-6 task scores only; their sum is the
  definition of the ABAW-3/4 multi-task learning challenge.
"""

from __future__ import annotations

from torch import Tensor

from fer_bench.metrics.action_units import au_f1
from fer_bench.metrics.classification import macro_f1
from fer_bench.metrics.regression import ccc


def va_score(preds: Tensor, target: Tensor) -> dict[str, float]:
    """``ccc_v``, ``ccc_a`` and their mean ``va`` from (N, 2) valence/arousal predictions and targets."""
    keep = (target >= -1).all(dim=1)
    v, a = ccc(preds[keep].clamp(-1, 1), target[keep]).tolist()
    return {"ccc_v": v, "ccc_a": a, "va": (v + a) / 2}


def expr_score(preds: Tensor, target: Tensor, num_classes: int = 8) -> float:
    """Macro F1 over all classes; ``preds`` are class ids (N,) or scores (N, C)."""
    keep = target >= 0
    return float(macro_f1(preds[keep], target[keep], num_classes, all_classes=True))


def au_score(preds_binary: Tensor, target: Tensor) -> float:
    """Mean per-AU F1 over frames with every AU labelled."""
    keep = (target >= 0).all(dim=1)
    return float(au_f1(preds_binary[keep], target[keep])[1])


def mtl_score(expr: tuple[Tensor, Tensor], va: tuple[Tensor, Tensor], au: tuple[Tensor, Tensor],
              num_classes: int = 8) -> dict[str, float]:
    """All task scores and their sum ``mtl``; each argument a (preds, target) pair for its task function."""
    out = va_score(*va)
    out["expr_f1"] = expr_score(*expr, num_classes=num_classes)
    out["au_f1"] = au_score(*au)
    out["mtl"] = out["va"] + out["expr_f1"] + out["au_f1"]
    return out
