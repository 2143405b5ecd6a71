"""IR-50 trunk (stages 1-3 of the ArcFace IR-50) as used by POSTER++ and QCS, and its weight loader."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fer_bench.models.backbones import strip_prefixes

IR50_UNITS = (3, 4, 14)
IR50_CHANNELS = (64, 128, 256)
_IGNORED_PREFIXES = ("output_layer.", "body4.")
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


def _normalise_key(key: str, units: tuple[int, ...]) -> str | None:
    """Strip wrapper prefixes, map the flat InsightFace layout (``body.N``) to ``body1..3``; None = unused."""
    key = strip_prefixes(key, _STRIP_PREFIXES)
    match = re.match(r"body\.(\d+)\.(.*)", key)
    if match:
        index, rest = int(match.group(1)), match.group(2)
        for stage, count in enumerate(units, start=1):
            if index < count:
                return f"body{stage}.{index}.{rest}"
            index -= count
        return None  # stage 4
    if key.startswith(_IGNORED_PREFIXES):
        return None
    return key


def load_ir50_weights(trunk: IR50Trunk, path: str | Path) -> list[str]:
    """Load IR-50 weights from a local state_dict file into ``trunk``; returns the loaded keys.

    Accepts a raw state_dict or a dict holding one under ``state_dict``; strips ``module.`` / ``ir_back.`` /
    ``backbone.`` / ``trunk.`` prefixes, ignores stage 4, ``output_layer`` and keys of other modules, and raises
    ValueError naming the file and the keys when a used key is missing or has the wrong shape.
    """
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping):
        raise ValueError(
            f"{path}: expected a state_dict (mapping of tensors), got {type(checkpoint).__name__}"
        )
    own = trunk.state_dict()
    found: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = _normalise_key(key, trunk.units)
        if name in own:
            found[name] = value
    required = [k for k in own if not k.endswith("num_batches_tracked")]
    missing = [k for k in required if k not in found]
    mismatched = [
        f"{k} {tuple(found[k].shape)} != {tuple(own[k].shape)}"
        for k in found
        if tuple(found[k].shape) != tuple(own[k].shape)
    ]
    if missing or mismatched:
        raise ValueError(
            f"{path}: cannot load IR-50 weights; missing keys: {missing or 'none'}; "
            f"shape mismatches: {mismatched or 'none'}"
        )
    trunk.load_state_dict(found, strict=False)
    return sorted(found)
