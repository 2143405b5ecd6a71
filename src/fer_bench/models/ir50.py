"""IR-50 trunk (stages 1-3 of the ArcFace IR-50, Deng et al., CVPR 2019) as used by POSTER++ and QCS, and the key
layout its weight files come in. A multi-scale trunk: ``models.backbones.create("ir50", features_only=True)``."""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fer_bench.models.weights_file import load_weights_into

VARIANTS: dict[str, dict] = {"ir50": {}}
NATIVE_SIZE = 224  # resized to 112 inside, as the official code
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # POSTER++ / QCS normalise with ImageNet statistics
IR50_UNITS = (3, 4, 14)
IR50_CHANNELS = (64, 128, 256)
_TRUNK_PREFIXES = ("input_layer.", "body1.", "body2.", "body3.")
_STRIP_PREFIXES = ("module.", "ir_back.", "backbone.", "trunk.")  # trunk.: a converted QCS checkpoint


class BottleneckIR(nn.Module):
    """IR unit: BN → conv3×3 → PReLU → conv3×3(stride) → BN, plus a (pooled or projected) shortcut."""

    def __init__(self, in_channels: int, depth: int, stride: int):
        super().__init__()
        if in_channels == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, depth, 1, stride, bias=False), nn.BatchNorm2d(depth)
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


def _stage(in_channels: int, depth: int, units: int) -> nn.Sequential:
    blocks = [BottleneckIR(in_channels, depth, 2)] + [BottleneckIR(depth, depth, 1) for _ in range(units - 1)]
    return nn.Sequential(*blocks)


class IR50Trunk(nn.Module):
    """IR-50 stages 1-3 returning the three stage outputs (64, 128, 256 channels).

    With ``resize_half`` the input is first resized to half its size by nearest interpolation (224 → 112, as
    the official code's ``F.interpolate(x, size=112)``). Parameter names follow the official ``Backbone``
    class (``input_layer``, ``body1..3``, ``shortcut_layer``, ``res_layer``), so ``ir50.pth`` loads by name.
    ``units`` exists for tiny test configurations; the real trunk is (3, 4, 14).
    """

    channels = IR50_CHANNELS

    def __init__(self, resize_half: bool = True, units: tuple[int, int, int] = IR50_UNITS):
        super().__init__()
        self.resize_half = resize_half
        self.units = tuple(units)
        scale = 2 if resize_half else 1
        self.reductions = (2 * scale, 4 * scale, 8 * scale)
        self.input_layer = nn.Sequential(
            nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64)
        )
        self.body1 = _stage(64, 64, units[0])
        self.body2 = _stage(64, 128, units[1])
        self.body3 = _stage(128, 256, units[2])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.resize_half:
            x = F.interpolate(x, size=(x.shape[-2] // 2, x.shape[-1] // 2), mode="nearest")
        x1 = self.body1(self.input_layer(x))
        x2 = self.body2(x1)
        x3 = self.body3(x2)
        return [x1, x2, x3]


def create(name: str = "ir50", image_size: int = NATIVE_SIZE, **kwargs) -> IR50Trunk:
    """The IR-50 trunk (``kwargs``: ``resize_half``, ``units``); it takes any input size divisible by 16."""
    if name not in VARIANTS:
        raise ValueError(f"unknown IR-50 variant {name!r}; expected one of {', '.join(VARIANTS)}")
    return IR50Trunk(**kwargs)


def _trunk_key(key: str, units: tuple[int, ...]) -> str | None:
    """A file key (wrapper prefixes stripped) in trunk names: the flat InsightFace layout (``body.N``) mapped to
    ``body1..3``; None for what the trunk does not build (stage 4, ``output_layer``, the rest of a POSTER++ or QCS
    network)."""
    match = re.match(r"body\.(\d+)\.(.*)", key)
    if match:
        index, rest = int(match.group(1)), match.group(2)
        for stage, count in enumerate(units, start=1):
            if index < count:
                return f"body{stage}.{index}.{rest}"
            index -= count
        return None  # stage 4
    return key if key.startswith(_TRUNK_PREFIXES) else None


def load_ir50_weights(trunk: IR50Trunk, path: str | Path) -> list[str]:
    """Load IR-50 weights from a local state_dict file into ``trunk`` strictly; returns the loaded keys.

    Accepts a raw state_dict or a dict holding one under ``state_dict``; strips ``module.`` / ``ir_back.`` /
    ``backbone.`` / ``trunk.`` prefixes, leaves out stage 4, ``output_layer`` and keys of other modules, and raises
    ValueError naming the file and the keys when a trunk key is missing, unexpected or of the wrong shape.
    """
    report = load_weights_into(trunk, path, strip=_STRIP_PREFIXES, key_map=partial(_trunk_key, units=trunk.units),
                               may_miss=("num_batches_tracked",), what="the IR-50 trunk")
    return sorted(report.loaded)
