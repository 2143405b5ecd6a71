"""QCS network: base path (trunk → multi-scale tokens → ViT → SE head) plus the training-only cross path.

Inference uses only the base path (``forward``). ``forward_quadruplet`` runs every branch through the base
path (one trunk call per branch, as the official code), refines the tokens of each scale with one shared
:class:`CrossSimilarityAttention`, and classifies z = x0 + concat(CSA outputs) with a second ViT and head.
The official dead modules (IR-50 ``output_layer``; in the ViTs ``patch_embed``, ``CON1``, ``IRLinear1/2``,
``eca_block`` and the per-block ``conv``) are not built.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fer_bench.methods.qcs.csa import CrossSimilarityAttention
from fer_bench.models import backbones
from fer_bench.models.vit import SEHead, ViT


def _halvings(reductions: Sequence[int]) -> list[int]:
    """Stride-2 steps per scale that bring every scale to reduction 2·max(reductions)."""
    target = 2 * max(reductions)
    steps = []
    for r in reductions:
        ratio = target // r
        if target % r or ratio & (ratio - 1):
            raise ValueError(
                f"trunk reductions {tuple(reductions)} are not power-of-two multiples of each other"
            )
        steps.append(ratio.bit_length() - 1)
    return steps


def _embed(channels: int, dim: int, steps: int) -> nn.Sequential:
    """``steps`` 3×3 stride-2 convs to ``dim`` (the first changes the width), or a 1×1 conv when steps = 0."""
    if steps == 0:
        return nn.Sequential(nn.Conv2d(channels, dim, 1))
    convs = [nn.Conv2d(channels, dim, 3, 2, 1)] + [nn.Conv2d(dim, dim, 3, 2, 1) for _ in range(steps - 1)]
    return nn.Sequential(*convs)


class TokenEmbed(nn.Module):
    """Three feature maps → 3·g² tokens of width ``dim`` on one g×g grid.

    Every scale first passes a 3×3 stride-2 conv keeping its channels (official conv1/2/3), then an embed that
    halves it until all scales reach reduction R = 2·max(reductions): scale i gets log2(R/r_i) − 1 further
    3×3 stride-2 convs, or a 1×1 conv when none is left. For IR-50 (r = 4, 8, 16 on a 224 input, R = 32) this
    is exactly embed_q (2 convs), embed_k (1 conv) and embed_v (1×1); any timm trunk with power-of-two stride
    ratios is mapped the same way. ``image_size`` must be a multiple of R; then g = image_size / R.
    """

    def __init__(self, channels: Sequence[int], reductions: Sequence[int], dim: int, image_size: int):
        super().__init__()
        steps = _halvings(reductions)
        target = 2 * max(reductions)
        if image_size % target:
            raise ValueError(f"image_size {image_size} must be a multiple of {target} for this trunk")
        self.grid = image_size // target
        self.tokens_per_scale = self.grid**2
        self.reduce = nn.ModuleList(nn.Conv2d(c, c, 3, 2, 1) for c in channels)
        self.embed = nn.ModuleList(_embed(c, dim, s - 1) for c, s in zip(channels, steps, strict=True))

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        tokens = [
            embed(reduce(f)).flatten(2).transpose(1, 2)
            for f, reduce, embed in zip(feats, self.reduce, self.embed, strict=True)
        ]
        return torch.cat(tokens, dim=1)


class QCSNet(nn.Module):
    """QCS / DCS network around a 3-scale trunk exposing ``channels`` and ``reductions``."""

    def __init__(
        self,
        trunk: nn.Module,
        num_classes: int,
        dim: int = 768,
        heads: int = 8,
        base_depth: int = 2,
        cross_depth: int = 1,
        cross_dropout: float = 0.0,
        csa_variant: str = "sd",
        csa_scope: str = "batch",
        branches: int = 4,
        image_size: int = 224,
    ):
        super().__init__()
        self.branches = branches
        self.trunk = trunk
        self.tokens = TokenEmbed(trunk.channels, trunk.reductions, dim, image_size)
        num_tokens = 3 * self.tokens.tokens_per_scale
        self.vit_base = ViT(num_tokens, dim, base_depth, heads)
        self.head_base = SEHead(dim, num_classes)
        self.csa = nn.ModuleList(
            CrossSimilarityAttention(dim, csa_variant, csa_scope, branches) for _ in range(3)
        )
        self.vit_cross = ViT(num_tokens, dim, cross_depth, heads, dropout=cross_dropout)
        self.head_cross = SEHead(dim, num_classes)

    def inference_modules(self) -> list[nn.Module]:
        """The modules of the inference (base) path."""
        return [self.trunk, self.tokens, self.vit_base, self.head_base]

    def base(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Base path: (logits B×K, tokens x0 B×3g²×dim)."""
        cls, x0 = self.vit_base(self.tokens(self.trunk(x)))
        return self.head_base(cls), x0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Inference: base logits only (never touches CSA or the cross ViT)."""
        return self.base(x)[0]

    def forward_quadruplet(
        self, *images: torch.Tensor
    ) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """Training forward on (a, p, n, n2) — or (a, p) for DCS — image batches.

        Returns ``(base_logits, cross_logits)``, each a tuple with one B×K tensor per branch in input order.
        """
        if len(images) != self.branches:
            raise ValueError(f"this QCSNet has {self.branches} branches, got {len(images)} image batches")
        base_logits, x0 = zip(*(self.base(x) for x in images), strict=True)
        n = self.tokens.tokens_per_scale
        scale_outs = [csa(*(x[:, s * n : (s + 1) * n] for x in x0)) for s, csa in enumerate(self.csa)]
        cross_logits = []
        for b, x in enumerate(x0):
            z = x + torch.cat([outs[b] for outs in scale_outs], dim=1)
            cross_logits.append(self.head_cross(self.vit_cross(z)[0]))
        return tuple(base_logits), tuple(cross_logits)

    def k_scales(self) -> list[torch.Tensor | None]:
        """k = 1 + tanh θ of each scale's CSA (None for variants without the distance weight)."""
        return [csa.k for csa in self.csa]


def qcs_loss(
    base_logits: Sequence[torch.Tensor],
    cross_logits: Sequence[torch.Tensor],
    y: torch.Tensor,
    y_n: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean of the per-branch cross-entropies of both heads: a, p against y; n, n2 against y_n.

    Returns ``(total, base_part, cross_part)`` with base/cross_part the mean over branches of each head, so
    total = (base_part + cross_part) / 2 = the mean of the 8 (DCS: 4) terms.
    """
    if len(base_logits) != len(cross_logits):
        raise ValueError("base and cross logits must have one entry per branch each")
    if len(base_logits) == 4 and y_n is None:
        raise ValueError("4-branch QCS loss needs the negatives' labels y_n")
    targets = (y, y, y_n, y_n)[: len(base_logits)]
    base = torch.stack([F.cross_entropy(lg, t) for lg, t in zip(base_logits, targets, strict=True)]).mean()
    cross = torch.stack([F.cross_entropy(lg, t) for lg, t in zip(cross_logits, targets, strict=True)]).mean()
    return (base + cross) / 2, base, cross


def inference_parameter_count(net: QCSNet) -> int:
    """Parameters of the inference path (trunk, token embed, base ViT, base head)."""
    return sum(p.numel() for m in net.inference_modules() for p in m.parameters())


def build_qcs_net(
    num_classes: int,
    trunk: str = "ir50",
    trunk_weights: str | Path | None = None,
    pretrained: bool = False,
    trunk_out_indices: Sequence[int] = (1, 2, 3),
    **net_options,
) -> QCSNet:
    """Build a QCSNet on a multi-scale trunk from ``models.backbones``: ``trunk="ir50"`` = IR-50 stages 1-3
    (weights only from the local ``trunk_weights``); any other name is a timm model at ``trunk_out_indices``
    (``pretrained`` from timm's hub, or local ``trunk_weights`` loaded strictly). ``net_options``: the keyword
    arguments of :class:`QCSNet` (dim, heads, depths, CSA variant and scope, branches, image size).
    """
    if len(trunk_out_indices) != 3:
        raise ValueError(f"QCS needs exactly 3 feature scales, got out_indices={tuple(trunk_out_indices)}")
    backbone, _ = backbones.create(trunk, pretrained, trunk_weights, features_only=True,
                                   out_indices=trunk_out_indices)
    return QCSNet(backbone, num_classes, **net_options)
