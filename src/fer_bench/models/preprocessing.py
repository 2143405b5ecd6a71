"""Input size and normalisation of a backbone: the ``backbone.input_size``, ``backbone.mean`` and ``backbone.std``
config keys, resolved once per run.

A model's own recipe is not always timm's ``pretrained_cfg``: HSEmotion's MobileViT was trained at 224 px with
ImageNet mean/std, where timm's config says 256 px and mean 0 / std 1. Each value is taken from the first source
that has it:

1. the config key (``backbone.input_size`` / ``mean`` / ``std``) — the user's value;
2. for the size only, ``data.image_size`` (the run-wide resize of the profiles);
3. the metadata of a converted weight file (``backbone.weights`` or ``method.weights``, ``fer-bench convert``);
4. the backbone's own config (timm's ``pretrained_cfg``, MobileFaceNet's constants).

``record`` writes the resolved values back into the config, so a run's ``config.yaml`` holds them, not nulls.
"""

from __future__ import annotations

from dataclasses import replace

from fer_bench.models import weights_file
from fer_bench.models.backbones import BackboneInfo

KEYS = ("input_size", "mean", "std")


def recipe_of(meta: dict) -> dict:
    """``input_size``/``mean``/``std`` of a weight file's metadata (those it has)."""
    return {k: meta[k] for k in KEYS if meta.get(k) is not None}


def weights_recipe(path: str | None) -> dict:
    """The recipe in the metadata of the weight file ``path`` (empty without a file or metadata)."""
    return recipe_of(weights_file.read_meta(path)) if path else {}


def requested_size(backbone_cfg, data_size: int | None, recipe: dict) -> int | None:
    """The input size asked for before the backbone is built (None: the backbone's own). Architectures whose
    shape depends on it (MobileFaceNet's GDC kernel) are built at this size."""
    return backbone_cfg.input_size or data_size or recipe.get("input_size")


def resolve(backbone_cfg, own: BackboneInfo, data_size: int | None = None, recipe: dict | None = None) -> BackboneInfo:
    """``own`` (the backbone's config) with size, mean and std taken from the sources in the module's order."""
    recipe = recipe or {}
    size = requested_size(backbone_cfg, data_size, recipe) or own.image_size
    mean = backbone_cfg.mean if backbone_cfg.mean is not None else recipe.get("mean", own.mean)
    std = backbone_cfg.std if backbone_cfg.std is not None else recipe.get("std", own.std)
    return replace(own, image_size=int(size), mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std))


def record(backbone_cfg, info: BackboneInfo) -> None:
    """Write the resolved values into the config (``backbone.input_size``, ``mean``, ``std``)."""
    backbone_cfg.input_size = info.image_size
    backbone_cfg.mean = list(info.mean)
    backbone_cfg.std = list(info.std)


def for_config(cfg, own: BackboneInfo, weights: str | None) -> BackboneInfo:
    """Resolve a run's preprocessing (``cfg.backbone``, ``cfg.data.image_size``, the metadata of the weight file
    ``weights``) and record it in ``cfg.backbone``."""
    info = resolve(cfg.backbone, own, cfg.data.image_size, weights_recipe(weights))
    record(cfg.backbone, info)
    return info
