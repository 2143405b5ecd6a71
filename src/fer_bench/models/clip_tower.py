"""The CLIP image tower through timm (Radford et al., ICML 2021): ``vit_base_patch32_clip_quickgelu_224`` returns the
projected CLS embedding ``ln_post(x[:, 0]) @ proj`` (B×512, not L2-normalised) — timm's ``head`` is CLIP's ``proj``.

Weights come from a local file — an OpenAI checkpoint (TorchScript archive or state_dict), an open_clip state_dict
or one in timm names — converted to timm names by timm's own ViT ``checkpoint_filter_fn`` and loaded strictly
(``models.weights_file``); or, only when asked (``hub=True``), from the Hugging Face hub. The tower is built by
``models.backbones``; size overrides (``embed_dim``, ``depth``, ...) build the same architecture at toy size for
tests and CPU profiles.
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import torch
from timm.models.vision_transformer import checkpoint_filter_fn
from torch import nn

from fer_bench.models import backbones
from fer_bench.models.weights_file import load_state_into, read_file

HUB_TAG = "openai"


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file: a state_dict (``weights_only=True``) or an OpenAI TorchScript archive."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CLIP weights file {path} not found")
    if _is_torchscript(path):
        with warnings.catch_warnings():  # torch.jit.load is deprecated; OpenAI's files are TorchScript all the same
            warnings.simplefilter("ignore", FutureWarning)
            state = torch.jit.load(str(path), map_location="cpu").state_dict()
    else:
        state = read_file(path)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"CLIP weights file {path} holds no state_dict of tensors")
    return dict(state)


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(name.endswith("constants.pkl") or "/code/" in name for name in z.namelist())


def to_timm_state(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """A CLIP visual state_dict in timm names (OpenAI / open_clip layouts are renamed; the position embedding is
    resampled to the model's grid), as fp32 tensors."""
    converted = checkpoint_filter_fn(state, model)
    return {k: v.float() for k, v in converted.items()}


def load_clip_weights(model: nn.Module, path: str | Path) -> None:
    """Load a local CLIP checkpoint into a timm CLIP ViT strictly; a mismatch names the file and the keys."""
    load_state_into(model, to_timm_state(read_checkpoint(path), model), path, what=type(model).__name__)


def create_clip_vit(model: str = "vit_base_patch32_clip_quickgelu_224", weights: str | None = None,
                    hub: bool = False, image_size: int | None = None, out_dim: int | None = None,
                    embed_dim: int | None = None, depth: int | None = None, heads: int | None = None,
                    patch_size: int | None = None) -> nn.Module:
    """A timm CLIP ViT with its weights (random when none are given). ``None`` sizes keep the model's own
    (``out_dim``: 512); the others build the same architecture at toy size."""
    overrides = {"img_size": image_size, "embed_dim": embed_dim, "depth": depth, "num_heads": heads,
                 "patch_size": patch_size}
    kwargs = {k: v for k, v in overrides.items() if v is not None}
    name = f"{model}.{HUB_TAG}" if hub else model
    vit, _ = backbones.create(name, pretrained=hub, num_classes=out_dim or 512, **kwargs)
    if weights:
        load_clip_weights(vit, weights)
    elif not hub:
        clip_init(vit)
    return vit


def clip_init(vit: nn.Module) -> None:
    """OpenAI CLIP's initialisation of the class embedding, position embedding and projection (normal, std
    width^-0.5; no projection bias), so that a random tower's features have CLIP's scale (|F| ≈ 1)."""
    std = vit.embed_dim ** -0.5
    with torch.no_grad():
        for p in (vit.cls_token, vit.pos_embed, vit.head.weight):
            p.normal_(0.0, std)
        vit.head.bias.zero_()


class ClipImageTower(nn.Module):
    """A CLIP image tower; ``frozen``: no gradients, always in eval mode, run without a graph, and in half
    precision on GPU when ``half_on_gpu``. Output: B×``out_dim`` fp32 embeddings."""

    def __init__(self, vit: nn.Module, frozen: bool = True, half_on_gpu: bool = True):
        super().__init__()
        self.vit = vit
        self.frozen = frozen
        self.half_on_gpu = half_on_gpu
        self.out_dim = vit.num_classes
        self.mean, self.std = tuple(vit.pretrained_cfg["mean"]), tuple(vit.pretrained_cfg["std"])  # CLIP's own
        if frozen:
            self.vit.requires_grad_(False)
            self.vit.eval()

    def train(self, mode: bool = True):
        return super().train(mode and not self.frozen)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not self.frozen:
            return self.vit(images)
        dtype = torch.float16 if images.is_cuda and self.half_on_gpu else torch.float32
        if self.vit.head.weight.dtype != dtype:
            self.vit.to(dtype)  # the official code keeps CLIP in fp16 on GPU; fp32 on CPU
        with torch.no_grad():
            return self.vit(images.to(dtype)).float()
