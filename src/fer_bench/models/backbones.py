"""One factory in front of every image backbone: timm names, ``pretrained`` from the hub when the user has
network, or ``weights=/path/file.pth`` — a local state_dict loaded after construction, strictly."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from torch import nn

STRIP_PREFIXES = ("module.", "model.", "backbone.", "encoder.")


@dataclass(frozen=True)
class BackboneInfo:
    """What the rest of the framework needs to know about a backbone."""

    num_features: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


def strip_prefixes(key: str, prefixes: tuple[str, ...] = STRIP_PREFIXES) -> str:
    """A state_dict key without its wrapper prefixes (``module.``, ``model.``, ...), however deeply nested."""
    changed = True
    while changed:
        changed = False
        for prefix in prefixes:
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key


def load_state_dict_file(model: nn.Module, path: str | Path, ignore_prefixes: tuple[str, ...] = ()) -> None:
    """Load a local state_dict into ``model``; every model key must be matched with the right shape.

    Wrapper prefixes (``module.``, ``model.``, ...) are stripped; keys in the file that the model lacks
    (a classifier, say) are ignored only when they start with one of ``ignore_prefixes``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} not found")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    state = {strip_prefixes(k): v for k, v in state.items()}
    problems = state_mismatch(model, state, ignore_prefixes)
    if problems:
        raise ValueError(f"weights file {path} does not fit the model ({problems})")
    model.load_state_dict({k: state[k] for k in model.state_dict()})


def state_mismatch(model: nn.Module, state: dict, ignore_prefixes: tuple[str, ...] = ()) -> str:
    """What keeps ``state`` from loading strictly into ``model`` (missing keys, shape mismatches, unexpected keys
    not under ``ignore_prefixes``), or '' when it fits."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if k in state and state[k].shape != v.shape]
    extra = [k for k in state if k not in own and not k.startswith(ignore_prefixes)]
    return "; ".join(f"{name}: {', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''}"
                     for name, keys in (("missing", missing), ("shape mismatch", wrong), ("unexpected", extra)) if keys)


def create(name: str, pretrained: bool = False, weights: str | None = None, drop_rate: float = 0.0,
           **kwargs) -> tuple[nn.Module, BackboneInfo]:
    """A timm feature extractor (no classifier) and its input size and normalisation."""
    try:
        model = timm.create_model(name, pretrained=pretrained, num_classes=0, drop_rate=drop_rate, **kwargs)
    except RuntimeError as e:
        raise ValueError(f"backbone '{name}': {e}") from None
    if weights:
        classifier = model.default_cfg.get("classifier", "fc")
        load_state_dict_file(model, weights, ignore_prefixes=(f"{classifier}.", "head.", "fc.", "classifier."))
    cfg = model.pretrained_cfg
    info = BackboneInfo(model.num_features, int(cfg.get("input_size", (3, 224, 224))[-1]),
                        tuple(cfg.get("mean", (0.485, 0.456, 0.406))), tuple(cfg.get("std", (0.229, 0.224, 0.225))))
    return model, info
