"""The ``method.*`` keys of CAFE (Zhang et al., ECCV 2024; official code: github.com/zyh-uaiaaaa/Generalizable-FER)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from fer_bench.config.choices import choice
from fer_bench.config.faithful import PROTOCOLS
from fer_bench.config.init_sources import InitSource

LOSS_FORMS = ("code", "paper")  # method.groups / method.div: the official code's form or the paper's


@dataclass
class ClipTowerConfig:
    """The CLIP image tower (timm). ``weights``: a local OpenAI (TorchScript or state_dict), open_clip or timm
    checkpoint; ``hub``: timm's ``<model>.openai`` weights from the hub (needs network). Size fields left ``None``
    keep the model's own (``out_dim`` 512); the CPU profile sets them for a tiny random tower."""

    model: str = "vit_base_patch32_clip_quickgelu_224"
    weights: str | None = None
    hub: bool = False
    half_on_gpu: bool = True
    out_dim: int | None = None
    embed_dim: int | None = None
    depth: int | None = None
    heads: int | None = None
    patch_size: int | None = None


@dataclass
class ClipGferConfig:
    """CAFE (Zhang et al., ECCV 2024). ``variant``: ``cafe`` (mask + channel losses), ``linear_probe`` (frozen tower +
    linear head) or ``finetune`` (tower trained at ``finetune_lr`` + linear head). ``mask_trunk``/``mask_weights``:
    the mask CNN and its face-recognition weights; ``lam``/``beta``: weights of l_sep/l_div; ``drop``: channels
    zeroed per group; ``groups``/``div``: ``code`` (official) or ``paper`` forms; ``preprocess``: ``imagenet``
    (official) or ``clip`` mean/std."""

    paper_init: ClassVar[str] = "CLIP ViT-B/32 image tower (OpenAI weights)"
    init_sources: ClassVar[tuple[InitSource, ...]] = (
        InitSource("clip", "method.clip.weights", hub="method.clip.hub", hub_model="method.clip.model",
                   hub_tag=".openai"),
        InitSource("mask", "method.mask_weights", paper=False))

    name: str = "clip_gfer"
    protocol: str = choice(*PROTOCOLS)
    variant: str = choice("cafe", "linear_probe", "finetune")
    clip: ClipTowerConfig = field(default_factory=ClipTowerConfig)
    mask_trunk: str = "resnet18"
    mask_weights: str | None = None
    lam: float = 1.5
    beta: float = 5.0
    drop: int = 10
    groups: str = choice(*LOSS_FORMS)
    div: str = choice(*LOSS_FORMS)
    preprocess: str = choice("imagenet", "clip")
    finetune_lr: float = 1.0e-5
