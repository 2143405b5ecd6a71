"""DDAMFN backbone (Zhang et al., "A Dual-Direction Attention Mixed Feature Network for Facial Expression
Recognition", Electronics 2023; official code SainingZhang/DDAMFN ``networks/DDAM.py`` and
``networks/MixedFeatureNet.py``), the network of HSEmotion's MT-DDAMFN (``DDAMNet(num_class=10, num_head=2)``).

MixedFeatureNet (MFN) trunk up to ``conv_6_sep``: MobileFaceNet-like stages whose blocks expand with a 1×1 conv,
filter with a *mixed* depthwise conv (channel groups with kernels 3/5/7/9, no BatchNorm or activation after it, as
in the official forward), reweight with coordinate attention and project back. Then ``num_heads`` dual-direction
attention heads, max-fused, multiply the 512×s×s map; a depthwise s×s conv + BatchNorm (``gdc``) gives the 512-d
embedding. s = image_size / 16 (7 at the native 112 px). Stage names follow the official MFN; modules that the
official forward never uses (``MDConv.bn``/``prelu``, each head's ``CoordAtt.Linear``, ``DDAMNet.bn``) are not
built. Input normalisation: ImageNet mean/std (the official training and test scripts).
"""

from __future__ import annotations

import torch
from torch import nn

from fer_bench.models.mobilefacenet import ConvBlock, linear_block

VARIANTS: dict[str, dict] = {
    "ddamfn": {"blocks": (9, 16, 6), "heads": 2},  # official MixedFeatureNet + DDAMNet(num_head=2)
    "ddamfn_tiny": {"blocks": (1, 1, 1), "heads": 2},  # fer-bench: CPU profile and tests (same widths)
}
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
NATIVE_SIZE = 112
EMBEDDING = 512


class CoordinateAttention(nn.Module):
    """Coordinate attention map a_h ⊗ a_w (B×C×H×W) of a feature map.

    Directional summaries: average pooling over each axis (``size=None``, MFN's ``CoordAtt``) or learned depthwise
    1×s / s×1 convs + BatchNorm over an s×s map (``size=s``, the DDA head). Both pass a shared 1×1 conv to
    max(8, C/32) channels, BatchNorm and hard-swish, then one 1×1 conv + sigmoid per direction.
    """

    def __init__(self, channels: int, size: int | None = None, reduction: int = 32):
        super().__init__()
        hidden = max(8, channels // reduction)
        self.learned = size is not None
        if self.learned:
            self.linear_h = linear_block(channels, channels, kernel=(1, size), groups=channels)
            self.linear_w = linear_block(channels, channels, kernel=(size, 1), groups=channels)
        self.conv1 = nn.Conv2d(channels, hidden, 1)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.act = nn.Hardswish()  # x·ReLU6(x + 3)/6, the official h_swish
        self.conv2 = nn.Conv2d(hidden, channels, 1)
        self.conv3 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        if self.learned:
            x_h, x_w = self.linear_h(x), self.linear_w(x)  # B×C×H×1, B×C×1×W
        else:
            x_h, x_w = x.mean(3, keepdim=True), x.mean(2, keepdim=True)
        y = self.act(self.bn1(self.conv1(torch.cat([x_h, x_w.transpose(2, 3)], dim=2))))
        y_h, y_w = torch.split(y, [h, w], dim=2)
        return self.conv2(y_h).sigmoid() * self.conv3(y_w.transpose(2, 3)).sigmoid()


class MixedDepthwiseConv(nn.Module):
    """Channel groups of ``splits`` sizes, each with its own depthwise k×k conv (``kernels``), concatenated."""

    def __init__(self, kernels: tuple[int, ...], splits: tuple[int, ...], stride: int):
        super().__init__()
        self.splits = list(splits)
        self.convs = nn.ModuleList(nn.Conv2d(c, c, k, stride, k // 2, groups=c, bias=False)
                                   for k, c in zip(kernels, splits, strict=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([conv(t) for conv, t in zip(self.convs, torch.split(x, self.splits, dim=1), strict=True)],
                         dim=1)


class MixedDepthWise(nn.Module):
    """1×1 expand (conv-BN-PReLU) → mixed depthwise conv → coordinate attention → 1×1 project (conv-BN)."""

    def __init__(self, in_c: int, out_c: int, expand: int, kernels: tuple[int, ...], splits: tuple[int, ...],
                 stride: int = 1, residual: bool = False):
        super().__init__()
        self.residual = residual
        self.conv = ConvBlock(in_c, expand)
        self.conv_dw = MixedDepthwiseConv(kernels, splits, stride)
        self.attention = CoordinateAttention(expand)
        self.project = linear_block(expand, out_c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_dw(self.conv(x))
        y = self.project(y * self.attention(y))
        return x + y if self.residual else y


def _stage(channels: int, blocks: int, expand: int, kernels: tuple[int, ...], splits: tuple[int, ...]):
    return nn.Sequential(*[MixedDepthWise(channels, channels, expand, kernels, splits, residual=True)
                           for _ in range(blocks)])


class MixedFeatureNet(nn.Module):
    """The MFN trunk to ``conv_6_sep``: B×3×S×S → B×512×S/16×S/16."""

    def __init__(self, blocks: tuple[int, int, int] = (9, 16, 6)):
        super().__init__()
        self.conv1 = ConvBlock(3, 64, (3, 3), (2, 2), (1, 1))
        self.conv2_dw = ConvBlock(64, 64, (3, 3), (1, 1), (1, 1), groups=64)
        self.conv_23 = MixedDepthWise(64, 64, 128, (3, 5, 7), (64, 32, 32), stride=2)
        self.conv_3 = _stage(64, blocks[0], 128, (3, 5), (96, 32))
        self.conv_34 = MixedDepthWise(64, 128, 256, (3, 5, 7), (128, 64, 64), stride=2)
        self.conv_4 = _stage(128, blocks[1], 256, (3, 5), (192, 64))
        self.conv_45 = MixedDepthWise(128, 256, 1024, (3, 5, 7, 9), (256, 256, 256, 256), stride=2)
        self.conv_5 = _stage(256, blocks[2], 512, (3, 5, 7), (172, 170, 170))
        self.conv_6_sep = ConvBlock(256, EMBEDDING)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.children():
            x = stage(x)
        return x


class DDAMFN(nn.Module):
    """MFN trunk + max-fused dual-direction attention heads + depthwise global conv: B×3×S×S → B×512."""

    def __init__(self, blocks: tuple[int, int, int] = (9, 16, 6), heads: int = 2, image_size: int = NATIVE_SIZE):
        super().__init__()
        if image_size % 16 or image_size < 16:
            raise ValueError(f"DDAMFN needs an image size that is a multiple of 16, got {image_size}")
        size = image_size // 16
        self.trunk = MixedFeatureNet(blocks)
        self.heads = nn.ModuleList(CoordinateAttention(EMBEDDING, size=size) for _ in range(heads))
        self.gdc = linear_block(EMBEDDING, EMBEDDING, kernel=(size, size), groups=EMBEDDING)
        self.num_features = EMBEDDING

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """Element-wise max of the heads' attention maps over the trunk output ``x``."""
        maps = [head(x) for head in self.heads]
        fused = maps[0]
        for m in maps[1:]:
            fused = torch.maximum(fused, m)
        return fused

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.trunk(images)
        return self.gdc(x * self.attention(x)).flatten(1)


def create(name: str, image_size: int = NATIVE_SIZE, **overrides) -> DDAMFN:
    """A DDAMFN variant by name (``VARIANTS``); ``overrides`` (e.g. ``heads``) replace the variant's settings."""
    if name not in VARIANTS:
        raise ValueError(f"unknown DDAMFN variant {name!r}; expected one of {', '.join(VARIANTS)}")
    return DDAMFN(image_size=image_size, **{**VARIANTS[name], **overrides})
