"""HSEmotion-style multitask backbones (expression + valence/arousal) and frozen features → small downstream heads
(Savchenko 2024; github.com/av-savchenko/face-emotion-recognition)."""

from fer_bench.methods.multitask.config import MultitaskConfig
from fer_bench.methods.spec import MethodSpec

SPEC = MethodSpec(
    key="multitask",
    summary="HSEmotion multitask backbone (expression + valence/arousal), frozen features -> downstream heads",
    config=MultitaskConfig,
    module="fer_bench.methods.multitask.module:Multitask",
    capabilities={"export", "cross_domain", "valence_arousal", "backbone_input"},
    tiny=("data.space=basic7", "data.synth.classes=basic7", "data.image_size=48"),
    commands={"extract": "fer_bench.methods.multitask.commands:extract_command",
              "downstream": "fer_bench.methods.multitask.commands:downstream_command"},
    converters={"hsemotion": "fer_bench.methods.multitask.commands:convert_command"},
    perf="fer_bench.methods.multitask.perf",
)
