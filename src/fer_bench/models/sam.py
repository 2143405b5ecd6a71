"""Sharpness-Aware Minimisation (Foret et al. 2021) with the davda54/sam interface.

Per step: loss → backward → ``first_step`` (w ← w + e, e = ρ·g / (‖g‖₂ + 1e-12), norm over all parameters;
``adaptive`` scales by |w|) → loss at w + e on the same batch → backward → ``second_step`` (restore w, base
optimizer step with the gradient taken at w + e). Under Lightning manual optimisation call these on the raw
optimizer (``self.optimizers().optimizer``), not on the LightningOptimizer wrapper.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


class SAM(torch.optim.Optimizer):
    """SAM wrapper around ``base_optimizer`` (a class, e.g. ``torch.optim.Adam``) built on the same groups.

    The base optimizer's state lives in ``self.base_optimizer``; ``state_dict``/``load_state_dict`` save and
    restore exactly that state (param groups are shared), so checkpoints resume the base optimizer.
    """

    def __init__(
        self,
        params,
        base_optimizer: type[torch.optim.Optimizer],
        rho: float = 0.05,
        adaptive: bool = False,
        **kwargs: Any,
    ):
        if rho < 0:
            raise ValueError(f"invalid rho {rho}, must be non-negative")
        super().__init__(params, dict(rho=rho, adaptive=adaptive, **kwargs))
        self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)

    def _grad_norm(self) -> torch.Tensor:
        norms = [
            ((p.abs() if group["adaptive"] else 1.0) * p.grad).norm(p=2)
            for group in self.param_groups
            for p in group["params"]
            if p.grad is not None
        ]
        device = self.param_groups[0]["params"][0].device
        return torch.stack([n.to(device) for n in norms]).norm(p=2)

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Move to the local worst case w + e and remember w."""
        grad_norm = self._grad_norm()
        for group in self.param_groups:
            scale = group["rho"] / (grad_norm + 1e-12)
            for p in group["params"]:
                if p.grad is None:
                    continue
                self.state[p]["old_p"] = p.detach().clone()
                e_w = (p.pow(2) if group["adaptive"] else 1.0) * p.grad * scale.to(p)
                p.add_(e_w)
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Restore w and take the base optimizer step with the current (w + e) gradient."""
        self.step()
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> None:
        """Without a closure: the second half of a SAM step (needs ``first_step`` first). With a closure that
        recomputes loss and gradients: a whole SAM step (first_step, closure, second half)."""
        if closure is not None:
            self.first_step(zero_grad=True)
            with torch.enable_grad():
                closure()
        perturbed = [p for group in self.param_groups for p in group["params"] if "old_p" in self.state[p]]
        if not perturbed:
            raise RuntimeError("SAM.step() without a closure must follow first_step()")
        for p in perturbed:
            p.copy_(self.state[p].pop("old_p"))
        self.base_optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups
