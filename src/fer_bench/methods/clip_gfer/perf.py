"""CAFE's side of ``fer-bench perf``: its mask CNN goes on the shared timm backbone (beside the frozen CLIP tower of
its cpu profile), the plain-PyTorch training loss, and the check that the frozen tower never joins a backward pass."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fer_bench.methods.clip_gfer.losses import diversity_loss, separation_loss

# The config key that puts the method on the benchmark's shared timm backbone: the mask CNN.
BACKBONE_KEY = "method.mask_trunk"
# Targets this method adds: name -> (comparison, bound).
TARGETS = {"cafe_frozen_tower_gradients": ("<=", 0)}


def fitted(backbone: str) -> list[str]:
    """The tower projects to the mask CNN's width, so masking multiplies matching channels."""
    from fer_bench.models import backbones

    return [f"method.clip.out_dim={backbones.create(backbone)[1].num_features}"]


def plain_loss(method, batch: dict) -> torch.Tensor:
    """Cross-entropy of the masked frozen features plus the channel separation and diversity terms."""
    features = method.net.tower(batch["image"])  # frozen: no graph, as in the method
    masked = features * method.net.mask(batch["image"])
    m = method.cfg.method
    drop = method.groups.drop_mask(m.drop, method.drop_generator(masked.device))
    channel_terms = (m.lam * separation_loss(masked, batch["label"], method.groups, drop)
                     + m.beta * diversity_loss(masked, method.groups, m.div))
    return F.cross_entropy(method.net.fc(masked), batch["label"]) + channel_terms


def targets(run) -> list[tuple[str, float, str]]:
    """After the timed training: tower parameters holding a gradient, plus 1 if the tower's output (grad mode on)
    carries an autograd graph — 0 means the frozen tower never took part in a backward pass."""
    tower = run.trained.net.tower
    with_grad = sum(p.grad is not None for p in tower.parameters())
    with torch.enable_grad():
        graph = int(tower(run.batch["image"].to(run.trained.device)).requires_grad)
    tensors = sum(1 for _ in tower.parameters())
    return [("cafe_frozen_tower_gradients", with_grad + graph,
             f"{with_grad} of {tensors} tower tensors with a gradient; output graph: {bool(graph)}")]
