"""A centre-loss baseline as a fer-bench plugin (Wen et al., "A Discriminative Feature Learning Approach for Deep
Face Recognition", ECCV 2016; official code: github.com/ydwen/caffe-face).

This file is what fer-bench reads to list and validate the method, so it imports no torch: the spec names the
LightningModule by a dotted reference, loaded only when a run builds it.
"""

from fer_bench.methods.spec import MethodSpec
from fer_bench_centre_loss.config import CentreLossConfig

SPEC = MethodSpec(
    key="centre_loss",
    summary="timm backbone + linear head, cross-entropy + λ·centre loss (Wen et al., ECCV 2016)",
    config=CentreLossConfig,
    module="fer_bench_centre_loss.module:CentreLossMethod",
    capabilities={"export", "cross_domain", "backbone_input"},
    tiny=("data.image_size=48",),
    check="fer_bench_centre_loss.config:check",
    experiment="fer_bench_centre_loss:experiment.yaml",
)
