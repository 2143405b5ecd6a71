"""CAFE's training-only channel losses (Zhang et al., ECCV 2024, Eq. 4-9; ``supervisor`` in
zyh-uaiaaaa/Generalizable-FER ``code/ours_CAFE.py``).

The D masked CLIP channels are split into L class groups of c = ⌊D/L⌋ channels. ``code`` grouping (official
max-pool windows [c·g, c·g + c)) never pools the last D − L·c channels (channel 511 for D = 512, L = 7); ``paper``
grouping gives them to the last group. The drop mask zeroes ``n_drop`` channels in each group (the last group
counts every channel from c·(L−1) on), one pattern for the whole batch, drawn from a torch generator.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fer_bench.methods.clip_gfer.config import LOSS_FORMS


class ChannelGroups:
    """Group max and drop mask over the channel axis of B×D features, for L groups."""

    def __init__(self, dim: int, groups: int, mode: str = "code"):
        if mode not in LOSS_FORMS:
            raise ValueError(f"method.groups={mode!r}; allowed: {', '.join(LOSS_FORMS)}")
        if groups < 1 or dim < groups:
            raise ValueError(f"cannot split {dim} channels into {groups} class groups")
        self.dim, self.groups, self.width = dim, groups, dim // groups
        self.last_start = self.width * (groups - 1)
        self.end = dim if mode == "paper" else self.width * groups

    def group_max(self, x: torch.Tensor) -> torch.Tensor:
        """B×D → B×L: the max over each group's channels."""
        head = x[:, :self.last_start].reshape(x.shape[0], self.groups - 1, self.width).amax(-1)
        return torch.cat([head, x[:, self.last_start:self.end].amax(-1, keepdim=True)], dim=1)

    def drop_mask(self, n_drop: int, generator: torch.Generator) -> torch.Tensor:
        """A D-vector of ones with exactly ``n_drop`` zeros in each group, on the generator's device."""
        if not 0 <= n_drop <= self.width:
            raise ValueError(f"method.drop={n_drop}: must lie in [0, {self.width}] (channels per group)")
        device = generator.device
        mask = torch.ones(self.dim, device=device)
        for g in range(self.groups):
            start = g * self.width
            size = self.width if g < self.groups - 1 else self.dim - start
            mask[start + torch.randperm(size, generator=generator, device=device)[:n_drop]] = 0.0
        return mask


def separation_loss(masked: torch.Tensor, labels: torch.Tensor, groups: ChannelGroups,
                    drop: torch.Tensor) -> torch.Tensor:
    """l_sep = CE(group max of the dropped masked features, y): raw values as logits (paper Eq. 5-6)."""
    return F.cross_entropy(groups.group_max(masked * drop), labels)


def diversity_loss(masked: torch.Tensor, groups: ChannelGroups, form: str = "code") -> torch.Tensor:
    """l_div = 1 − mean over (batch, groups) of the group max / c (``code``), or 1 − (1/(N·c)) Σ_i Σ_j of it
    (``paper`` Eq. 8: L times the code form's sum term)."""
    if form not in LOSS_FORMS:
        raise ValueError(f"method.div={form!r}; allowed: {', '.join(LOSS_FORMS)}")
    group_max = groups.group_max(masked)
    term = group_max.mean() if form == "code" else group_max.sum(1).mean()
    return 1.0 - term / groups.width


def cafe_loss(logits: torch.Tensor, masked: torch.Tensor, labels: torch.Tensor, groups: ChannelGroups,
              drop: torch.Tensor, lam: float, beta: float, form: str = "code"
              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """CAFE's training loss l_cls + λ·l_sep + β·l_div (paper Eq. 9; the official loop uses λ = 1.5, β = 5):
    ``logits`` = FC(masked features), ``drop`` the step's drop mask. Returns (total, {name: term})."""
    l_cls = F.cross_entropy(logits, labels)
    l_sep = separation_loss(masked, labels, groups, drop)
    l_div = diversity_loss(masked, groups, form)
    return l_cls + lam * l_sep + beta * l_div, {"l_cls": l_cls, "l_sep": l_sep, "l_div": l_div}
