"""The fer-bench metric suite: functional cores plus DDP-exact ``torchmetrics.Metric`` classes."""

from fer_bench.metrics import abaw, continual
from fer_bench.metrics.action_units import AUF1, au_f1, tune_thresholds
from fer_bench.metrics.classification import (
    ClassificationMetrics,
    accuracy,
    confusion_matrix,
    macro_f1,
    per_class_accuracy,
    uar,
)
from fer_bench.metrics.regression import CCC, ccc, ccc_loss

__all__ = [
    "AUF1",
    "CCC",
    "ClassificationMetrics",
    "abaw",
    "accuracy",
    "au_f1",
    "ccc",
    "ccc_loss",
    "confusion_matrix",
    "continual",
    "macro_f1",
    "per_class_accuracy",
    "tune_thresholds",
    "uar",
]
