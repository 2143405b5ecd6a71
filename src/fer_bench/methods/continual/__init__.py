"""Class-incremental basic → compound learning with knowledge distillation and Predictive Sorting Memory Replay
(Maiden & Nakisa 2023; github.com/AngusMaiden/complex-FER)."""

from fer_bench.methods.continual.config import ContinualConfig
from fer_bench.methods.spec import MethodSpec

SPEC = MethodSpec(
    key="continual",
    summary="class-incremental basic -> compound learning, KD + Predictive Sorting Memory Replay",
    config=ContinualConfig,
    module="fer_bench.methods.continual.module:Continual",
    loop="scenario",
    capabilities={"export", "backbone_input"},
    tiny=("data.synth.subjects=9", "data.synth.size=32", "data.image_size=24", "method.step_batch_size=8",
          "method.step_epochs=1", "method.max_steps=2", "method.fewshot.enabled=false"),
)
