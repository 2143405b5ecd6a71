"""One factory in front of every image backbone: :func:`create` builds timm models by name and the families
fer-bench builds itself (IR-50, MobileFaceNet, DDAMFN), either as a pooled feature extractor (images → N×D) or,
with ``features_only``, as a multi-scale trunk (images → feature maps). ``pretrained`` asks timm's hub (only when
the user sets it and has network; the local families have no hub weights and never download); ``weights`` is a
local state_dict file loaded strictly after construction (``models.weights_file``) in place of hub weights."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType

import timm
import torch
from torch import nn

from fer_bench.models import ddamfn, ir50, mobilefacenet
from fer_bench.models.weights_file import load_weights_into

STRIP_PREFIXES = ("module.", "model.", "backbone.", "encoder.")
CLASSIFIER_PREFIXES = ("head.", "fc.", "classifier.")  # in a file, ignored by a feature extractor


@dataclass(frozen=True)
class BackboneInfo:
    """What the rest of the framework needs to know about a backbone."""

    num_features: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass(frozen=True)
class Family:
    """A backbone family fer-bench builds itself. ``module`` has ``VARIANTS`` (the names), ``create(name,
    image_size, **kwargs)``, ``NATIVE_SIZE``, ``MEAN`` and ``STD``; ``trunk``: it builds a multi-scale trunk
    (``features_only``), not a pooled extractor; ``load``: its own weight-file loader (default: by name, strictly)."""

    module: ModuleType
    trunk: bool = False
    load: Callable[[nn.Module, str | Path], object] | None = None


FAMILIES = (Family(ir50, trunk=True, load=ir50.load_ir50_weights), Family(mobilefacenet), Family(ddamfn))


def family_of(name: str) -> Family | None:
    """The local family that builds ``name``, or None for a timm name."""
    return next((f for f in FAMILIES if name in f.module.VARIANTS), None)


def load_backbone_weights(model: nn.Module, path: str | Path) -> None:
    """Load a local state_dict into a feature extractor strictly; wrapper prefixes (``module.``, ``model.``, ...)
    are stripped and classifier keys (``head.``, ``fc.``, ``classifier.``) the extractor lacks are ignored."""
    classifier = getattr(model, "default_cfg", {}).get("classifier", "fc")
    load_weights_into(model, path, strip=STRIP_PREFIXES, ignore=(f"{classifier}.", *CLASSIFIER_PREFIXES),
                      what="the backbone")


class TimmTrunk(nn.Module):
    """Any timm model as a multi-scale feature trunk (``features_only=True``): NCHW maps at ``out_indices``, with
    their ``channels`` and ``reductions``. Local ``weights`` are checked against the whole model (classifier keys
    ignored), then the trunk takes its part."""

    def __init__(self, name: str, out_indices: Sequence[int] = (1, 2, 3), pretrained: bool = False,
                 weights: str | Path | None = None):
        super().__init__()
        self.model = timm.create_model(name, pretrained=pretrained and not weights, features_only=True,
                                       out_indices=tuple(out_indices))
        if weights:
            whole, _ = create(name, weights=weights)
            self.model.load_state_dict(_trunk_state(self.model.state_dict(), whole.state_dict()))
        self.channels = tuple(self.model.feature_info.channels())
        self.reductions = tuple(self.model.feature_info.reduction())
        self.channels_last = str(getattr(self.model, "output_fmt", "NCHW")) == "NHWC"

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.model(x)
        return [f.permute(0, 3, 1, 2) for f in feats] if self.channels_last else list(feats)


def _trunk_state(trunk: dict[str, torch.Tensor], whole: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors of a whole timm model under its feature trunk's names: the trunk keeps the model's modules up to
    its last stage, nested sequentials flattened (``stages.0`` → ``stages_0``) or the model held as ``model``."""
    names: dict[str, str] = {}
    for key in whole:
        parts = key.split(".")
        for depth in range(len(parts) - 1, 0, -1):  # the unflattened name wins: added last
            names["_".join(parts[:depth]) + "." + ".".join(parts[depth:])] = key
        names[f"model.{key}"] = key
    unmatched = [k for k in trunk if names.get(k) not in whole]
    if unmatched:
        raise ValueError(f"cannot match the feature trunk's keys to the model's: {', '.join(unmatched[:6])}")
    return {k: whole[names[k]] for k in trunk}


def create(name: str, pretrained: bool = False, weights: str | Path | None = None, *, image_size: int | None = None,
           drop_rate: float = 0.0, features_only: bool = False, out_indices: Sequence[int] = (1, 2, 3),
           **kwargs) -> tuple[nn.Module, BackboneInfo]:
    """A backbone by name and what to know about it; ``image_size`` (default: the backbone's own) is the input size
    the info reports and the size a local family is built for. A pooled extractor (timm: ``num_classes=0`` unless
    given) maps images to N×``num_features``; with ``features_only``, a trunk maps them to a list of NCHW feature
    maps and has ``channels`` and ``reductions`` (timm trunks at ``out_indices``). A ``weights`` file replaces hub
    weights (nothing is downloaded then). ``kwargs`` go to timm's ``create_model`` (with ``drop_rate``) or to the
    local family's constructor."""
    family = family_of(name)
    if family is None:
        model, info = _timm(name, pretrained, weights, drop_rate, features_only, out_indices, kwargs)
    else:
        model, info = _local(family, name, pretrained, weights, image_size, features_only, kwargs)
    return model, replace(info, image_size=image_size or info.image_size)


def _timm(name, pretrained, weights, drop_rate, features_only, out_indices, kwargs) -> tuple[nn.Module, BackboneInfo]:
    try:
        if features_only:
            model = TimmTrunk(name, out_indices, pretrained, weights)
            cfg, num_features = model.model.pretrained_cfg, model.channels[-1]
        else:
            model = timm.create_model(name, pretrained=pretrained and not weights, drop_rate=drop_rate,
                                      **{"num_classes": 0, **kwargs})
            cfg, num_features = model.pretrained_cfg, model.num_features
    except RuntimeError as e:
        raise ValueError(f"backbone '{name}': {e}") from None
    if weights and not features_only:
        load_backbone_weights(model, weights)
    return model, BackboneInfo(num_features, int(cfg.get("input_size", (3, 224, 224))[-1]),
                               tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
                               tuple(cfg.get("std", (0.229, 0.224, 0.225))))


def _local(family: Family, name, pretrained, weights, image_size, features_only, kwargs) -> tuple[nn.Module,
                                                                                                 BackboneInfo]:
    if pretrained and not weights:
        raise ValueError(f"backbone '{name}' has no hub weights: give a local weights file (e.g. backbone.weights)")
    if features_only != family.trunk:
        raise ValueError(f"backbone '{name}' is a {'multi-scale trunk' if family.trunk else 'pooled extractor'} "
                         f"only: it cannot be built with features_only={features_only}")
    module = family.module
    size = image_size or module.NATIVE_SIZE
    try:
        model = module.create(name, image_size=size, **kwargs)
    except TypeError as e:
        raise ValueError(f"backbone '{name}' does not take {', '.join(kwargs)}: {e}") from None
    if weights:
        (family.load or load_backbone_weights)(model, weights)
    num_features = model.channels[-1] if family.trunk else model.num_features
    return model, BackboneInfo(num_features, size, module.MEAN, module.STD)
