"""QCS: Quadruplet Cross Similarity with Cross Similarity Attention (Wang et al. 2024; github.com/birdwcp/QCS)."""

from fer_bench.methods.qcs.config import QCSConfig
from fer_bench.methods.spec import MethodSpec

SPEC = MethodSpec(
    key="qcs",
    summary="Quadruplet Cross Similarity with Cross Similarity Attention (Wang et al. 2024)",
    config=QCSConfig,
    module="fer_bench.methods.qcs.module:QCS",
    capabilities={"export", "cross_domain"},
    tiny=("data.synth.size=32", "method.dim=32", "method.image_size=32", "method.heads=2", "data.batch_size=8"),
    converters={"qcs": "fer_bench.methods.qcs.commands:convert_command"},
    perf="fer_bench.methods.qcs.perf",
)
