"""The plain baseline: a timm backbone and a linear head trained with cross-entropy; the reference of every table."""

from fer_bench.methods.baseline.config import BaselineConfig
from fer_bench.methods.spec import MethodSpec

SPEC = MethodSpec(
    key="baseline",
    summary="timm backbone + linear head, cross-entropy",
    config=BaselineConfig,
    module="fer_bench.methods.baseline.module:Baseline",
    capabilities={"export", "cross_domain", "backbone_input"},
    tiny=("data.image_size=48",),
    perf="fer_bench.methods.baseline.perf",
)
