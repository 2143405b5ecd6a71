"""MobileFaceNet as in insightface ``arcface_torch`` (the file HSEmotion ships as ``src/affectnet/mobilefacenet.py``).

Depthwise-separable residual stages, a 1x1 conv to 512 channels and the GDC embedding head (a depthwise conv over
the whole final map, Linear without bias, BatchNorm1d). Module names follow the original, so its state_dicts load
unchanged. The GDC kernel is ``image_size // 16`` (7 at the native 112 px), which lets tests run at small sizes.
Input normalisation: mean = std = 0.5.
"""

from __future__ import annotations

from torch import nn

VARIANTS: dict[str, dict] = {
    "mobilefacenet": {"blocks": (1, 4, 6, 2), "scale": 2},  # arcface_torch get_mbf (HSEmotion mbf_va_mtl)
    "mobilefacenet_large": {"blocks": (2, 8, 12, 4), "scale": 4},  # arcface_torch get_mbf_large
    "mobilefacenet_tiny": {"blocks": (1, 1, 1, 1), "scale": 1},  # fer-bench: CPU profile and tests
}
MEAN = STD = (0.5, 0.5, 0.5)
NATIVE_SIZE = 112


class ConvBlock(nn.Module):
    """Conv (no bias) → BatchNorm → PReLU."""

    def __init__(self, in_c, out_c, kernel=(1, 1), stride=(1, 1), padding=(0, 0), groups=1, act=True):
        super().__init__()
        layers = [nn.Conv2d(in_c, out_c, kernel, stride, padding, groups=groups, bias=False), nn.BatchNorm2d(out_c)]
        if act:
            layers.append(nn.PReLU(out_c))
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)


def linear_block(in_c, out_c, kernel=(1, 1), stride=(1, 1), padding=(0, 0), groups=1) -> ConvBlock:
    """Conv → BatchNorm without activation (the original's ``LinearBlock``; same parameter names)."""
    return ConvBlock(in_c, out_c, kernel, stride, padding, groups, act=False)


class DepthWise(nn.Module):
    """1x1 expand to ``groups`` channels → depthwise 3x3 → 1x1 project; optional identity shortcut."""

    def __init__(self, in_c, out_c, residual=False, kernel=(3, 3), stride=(2, 2), padding=(1, 1), groups=1):
        super().__init__()
        self.residual = residual
        self.layers = nn.Sequential(
            ConvBlock(in_c, groups),
            ConvBlock(groups, groups, kernel, stride, padding, groups=groups),
            linear_block(groups, out_c),
        )

    def forward(self, x):
        return x + self.layers(x) if self.residual else self.layers(x)


class Residual(nn.Module):
    def __init__(self, c, num_block, groups, kernel=(3, 3), stride=(1, 1), padding=(1, 1)):
        super().__init__()
        self.layers = nn.Sequential(*[DepthWise(c, c, True, kernel, stride, padding, groups) for _ in range(num_block)])

    def forward(self, x):
        return self.layers(x)


class GDC(nn.Module):
    """Global depthwise conv over the final ``kernel``×``kernel`` map → Linear → BatchNorm1d embedding."""

    def __init__(self, embedding_size: int, kernel: int):
        super().__init__()
        self.layers = nn.Sequential(
            linear_block(512, 512, groups=512, kernel=(kernel, kernel)),
            nn.Flatten(),
            nn.Linear(512, embedding_size, bias=False),
            nn.BatchNorm1d(embedding_size),
        )

    def forward(self, x):
        return self.layers(x)


class MobileFaceNet(nn.Module):
    """Images (N, 3, S, S) with S a multiple of 16 → embeddings (N, ``num_features``)."""

    def __init__(self, num_features: int = 512, blocks=(1, 4, 6, 2), scale: int = 2, image_size: int = NATIVE_SIZE):
        super().__init__()
        if image_size % 16 or image_size < 16:
            raise ValueError(f"MobileFaceNet needs an image size that is a multiple of 16, got {image_size}")
        self.num_features = num_features
        c1, c2 = 64 * scale, 128 * scale
        first = (ConvBlock(c1, c1, (3, 3), (1, 1), (1, 1), groups=64) if blocks[0] == 1
                 else Residual(c1, blocks[0], groups=128))
        self.layers = nn.ModuleList([
            ConvBlock(3, c1, (3, 3), (2, 2), (1, 1)),
            first,
            DepthWise(c1, c1, groups=128),
            Residual(c1, blocks[1], groups=128),
            DepthWise(c1, c2, groups=256),
            Residual(c2, blocks[2], groups=256),
            DepthWise(c2, c2, groups=512),
            Residual(c2, blocks[3], groups=256),
        ])
        self.conv_sep = ConvBlock(c2, 512)
        self.features = GDC(num_features, image_size // 16)
        self._initialize_weights()

    def _initialize_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.features(self.conv_sep(x))


def create(name: str, image_size: int = NATIVE_SIZE, num_features: int = 512) -> MobileFaceNet:
    """A MobileFaceNet variant by name (``VARIANTS``)."""
    if name not in VARIANTS:
        raise ValueError(f"unknown MobileFaceNet variant '{name}'; known: {', '.join(VARIANTS)}")
    return MobileFaceNet(num_features, image_size=image_size, **VARIANTS[name])
