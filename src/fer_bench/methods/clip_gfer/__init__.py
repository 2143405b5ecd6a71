"""CAFE: CLIP-based generalizable FER, a frozen CLIP image tower with a learned sigmoid mask and channel losses
(Zhang et al., ECCV 2024; github.com/zyh-uaiaaaa/Generalizable-FER)."""

from fer_bench.methods.clip_gfer.config import ClipGferConfig
from fer_bench.methods.spec import MethodSpec

SPEC = MethodSpec(
    key="clip_gfer",
    summary="CLIP-based generalizable FER (CAFE, Zhang et al. ECCV 2024)",
    config=ClipGferConfig,
    module="fer_bench.methods.clip_gfer.module:ClipGfer",
    capabilities={"export", "cross_domain"},
    tiny=("data.image_size=32",),
    perf="fer_bench.methods.clip_gfer.perf",
)
