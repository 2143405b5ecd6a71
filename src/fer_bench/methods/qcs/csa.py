"""Cross Similarity Attention (QCS, Wang et al. 2024): one module per scale, shared by all branches.

Branch order is ``(a, p, n, n2)``: anchor and positive share class y, the two negatives share class y_n.
The four branches form the closed loop a –S– p –D– n2 –S– n –D– a; each loop edge is one distance matrix
E = cdist(Q_rows, Q_cols), built with the same argument order as the official ``Attn_QCS_*`` functions:

- same-class (similarity) edges: E_pa = cdist(Q_p, Q_a), E_n2n = cdist(Q_n2, Q_n);
- cross-class (distance) edges: E_na = cdist(Q_n, Q_a), E_n2p = cdist(Q_n2, Q_p).

Each branch reads each of its two matrices along its own axis (rows or columns), which reproduces the orientations
of birdwcp/QCS ``QCS_7cls_raf_db.py`` (a: S_paᵀ, D_naᵀ; p: S_pa, D_n2pᵀ; n: S_n2nᵀ, D_na; n2: S_n2n, D_n2p).

DCS (``branches=2``) is the official 2-branch model (``DCS_*`` files, ``Attn_DCS_S``): the inputs are
anchor and positive of the **same** class, the only edge is the similarity edge E_pa, so only variants ``s``
and ``sdpa`` exist there; the loss uses the label y for both branches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fer_bench.methods.qcs.config import CSA_SCOPES, CSA_VARIANTS
from fer_bench.models.vit import Mlp

# (rows, cols) branch indices of each loop edge; a=0, p=1, n=2, n2=3.
SAME_CLASS_EDGES = {4: ((1, 0), (3, 2)), 2: ((1, 0),)}
CROSS_CLASS_EDGES = {4: ((2, 0), (3, 1)), 2: ()}


def _extreme(e: torch.Tensor, scope: str, largest: bool) -> torch.Tensor:
    """Min or max of a B×N×M matrix: one scalar over the whole tensor (batch) or one per sample."""
    if scope == "batch":
        return e.max() if largest else e.min()
    return e.amax(dim=(1, 2), keepdim=True) if largest else e.amin(dim=(1, 2), keepdim=True)


def similarity(e: torch.Tensor, scope: str) -> torch.Tensor:
    """Official same-class map: E' = E − min(E); S = max(E') − E'."""
    shifted = e - _extreme(e, scope, largest=False)
    return _extreme(shifted, scope, largest=True) - shifted


def distance(e: torch.Tensor, scope: str) -> torch.Tensor:
    """Official cross-class map: D = E − min(E)."""
    return e - _extreme(e, scope, largest=False)


def reduce_own(m: torch.Tensor, own_dim: int) -> torch.Tensor:
    """r(M)[i] = Σ_j M[i, j] / ‖M[·, j]‖ with ``own_dim`` (1 = rows, 2 = cols) the own-position axis."""
    return F.normalize(m, p=2, dim=own_dim).sum(dim=3 - own_dim)


class CrossSimilarityAttention(nn.Module):
    """CSA for one scale; ``forward(*xs)`` takes ``branches`` tensors B×N×C and returns as many outputs.

    Per branch: X̂ = LN1(X); [Q | V] = proj(X̂); gate A = softmax over own positions of r(S) + k·r(D) with
    k = 1 + tanh θ (θ = 0 at init); Y = LN2(X̂ + A ⊙ V); O = Y + MLP(Y).

    Variants: ``sd`` (the method), ``s`` (similarity term only), ``d`` (distance term only; as in the official
    ablations neither single-term variant uses k, so θ exists only for ``sd``), and ``sdpa``: the scaled
    dot-product baseline ``Attn_HW`` — for each same-class pair one logits matrix Q_rows·Q_colsᵀ/√C, softmax
    along columns for the row branch and along rows for the column branch, and each branch adds the attention-
    weighted values of its partner (A @ V_partner) instead of A ⊙ V. ``sdpa`` ignores the cross-class pairs.

    ``scope="batch"`` takes the min/max of each distance matrix over the whole tensor (official, couples the
    samples of a batch); ``scope="sample"`` takes them per sample.
    """

    def __init__(
        self, dim: int, variant: str = "sd", scope: str = "batch", branches: int = 4, mlp_ratio: float = 4.0
    ):
        super().__init__()
        if variant not in CSA_VARIANTS:
            raise ValueError(f"unknown CSA variant {variant!r}; expected one of {CSA_VARIANTS}")
        if scope not in CSA_SCOPES:
            raise ValueError(f"unknown CSA scope {scope!r}; expected one of {CSA_SCOPES}")
        if branches not in SAME_CLASS_EDGES:
            raise ValueError(f"branches must be 4 (QCS) or 2 (DCS), got {branches}")
        if branches == 2 and variant in ("sd", "d"):
            raise ValueError(
                f"branches=2 (DCS) has no cross-class pair; use variant 's' or 'sdpa', not {variant!r}"
            )
        self.variant, self.scope, self.branches = variant, scope, branches
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, 2 * dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        if variant == "sd":
            self.theta = nn.Parameter(torch.zeros(()))

    @property
    def k(self) -> torch.Tensor | None:
        """Distance weight k = 1 + tanh θ (``sd`` only; None for the other variants)."""
        return 1 + torch.tanh(self.theta) if self.variant == "sd" else None

    def forward(
        self, *xs: torch.Tensor, return_gates: bool = False
    ) -> tuple[torch.Tensor, ...] | tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        if len(xs) != self.branches:
            raise ValueError(f"CSA expects {self.branches} branch tensors, got {len(xs)}")
        xh = [self.norm1(x) for x in xs]
        qk, v = zip(*(self.proj(x).chunk(2, dim=-1) for x in xh), strict=True)
        if self.variant == "sdpa":
            gates, mixed = self._sdpa(qk, v)
        else:
            gates = self.gates(qk)
            mixed = [g.unsqueeze(-1) * vb for g, vb in zip(gates, v, strict=True)]
        outs = []
        for x, m in zip(xh, mixed, strict=True):
            y = self.norm2(x + m)
            outs.append(y + self.mlp(y))
        return (tuple(outs), tuple(gates)) if return_gates else tuple(outs)

    def gates(self, qk: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        """Per-branch gates A_b (B×N, each summing to 1 over own positions) from the QK projections."""
        if self.variant == "d":
            scores = self._loop_terms(qk, CROSS_CLASS_EDGES[self.branches], distance)
        else:
            scores = self._loop_terms(qk, SAME_CLASS_EDGES[self.branches], similarity)
        if self.variant == "sd":
            dist, k = self._loop_terms(qk, CROSS_CLASS_EDGES[self.branches], distance), self.k
            scores = [s + k * d for s, d in zip(scores, dist, strict=True)]
        return [F.softmax(s, dim=-1) for s in scores]

    def _loop_terms(self, qk, edges, transform) -> list[torch.Tensor | None]:
        """r(M) of each branch for the loop edges of one kind, read along the branch's own axis."""
        terms: list[torch.Tensor | None] = [None] * self.branches
        for rows, cols in edges:
            m = transform(torch.cdist(qk[rows], qk[cols], p=2), self.scope)
            terms[rows] = reduce_own(m, own_dim=1)
            terms[cols] = reduce_own(m, own_dim=2)
        return terms

    def _sdpa(self, qk, v) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``Attn_HW`` baseline over the same-class pairs: returns (attention maps, A @ V_partner)."""
        attn: list[torch.Tensor | None] = [None] * self.branches
        mixed: list[torch.Tensor | None] = [None] * self.branches
        scale = qk[0].shape[-1] ** -0.5
        for rows, cols in SAME_CLASS_EDGES[self.branches]:
            logits = (qk[rows] @ qk[cols].transpose(-2, -1)) * scale
            attn[rows] = F.softmax(logits, dim=2)
            attn[cols] = F.softmax(logits, dim=1).transpose(1, 2)
            mixed[rows] = attn[rows] @ v[cols]
            mixed[cols] = attn[cols] @ v[rows]
        return attn, mixed
