"""Cross Similarity Attention against a naive loop reference (Wang et al., AAAI 2025; birdwcp/QCS)."""

import math

import pytest
import torch

from fer_bench.methods.qcs.csa import CrossSimilarityAttention

C = 8
A, P, N_, N2 = range(4)
# own × partner views per branch (birdwcp/QCS): (matrix name, transposed?)
VIEWS = {
    A: (("pa", True), ("na", True)),
    P: (("pa", False), ("n2p", True)),
    N_: (("n2n", True), ("na", False)),
    N2: (("n2n", False), ("n2p", False)),
}
PAIRS = {"pa": (P, A), "n2n": (N2, N_), "na": (N_, A), "n2p": (N2, P)}  # rows, cols


def _inputs(batch, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, n, C, generator=g, dtype=torch.float64) for _ in range(4)]


def _module(variant="sd", scope="batch", theta=0.3, seed=0):
    torch.manual_seed(seed)
    csa = CrossSimilarityAttention(C, variant=variant, scope=scope).double()
    if variant == "sd":
        with torch.no_grad():
            csa.theta.fill_(theta)
    return csa


def naive_gates(q, variant, scope, k):
    """Gates from explicit loops over sample, positions and channels (python floats)."""
    q = [t.tolist() for t in q]
    B, N = len(q[0]), len(q[0][0])
    E = {}
    for name, (r, c) in PAIRS.items():
        E[name] = [
            [
                [math.sqrt(sum((q[r][b][i][ch] - q[c][b][j][ch]) ** 2 for ch in range(C))) for j in range(N)]
                for i in range(N)
            ]
            for b in range(B)
        ]

    def scan(m, b, fn):
        samples = range(B) if scope == "batch" else [b]
        return fn(m[s][i][j] for s in samples for i in range(N) for j in range(N))

    maps = {}
    for name, e in E.items():
        if name in ("pa", "n2n"):
            shifted = [[[e[b][i][j] - scan(e, b, min) for j in range(N)] for i in range(N)] for b in range(B)]
            maps[name] = [
                [[scan(shifted, b, max) - shifted[b][i][j] for j in range(N)] for i in range(N)]
                for b in range(B)
            ]
        else:
            maps[name] = [
                [[e[b][i][j] - scan(e, b, min) for j in range(N)] for i in range(N)] for b in range(B)
            ]

    def reduce(name, transposed, b):
        m = [[maps[name][b][j][i] if transposed else maps[name][b][i][j] for j in range(N)] for i in range(N)]
        norms = [max(math.sqrt(sum(m[i][j] ** 2 for i in range(N))), 1e-12) for j in range(N)]
        return [sum(m[i][j] / norms[j] for j in range(N)) for i in range(N)]

    gates = []
    for branch in range(4):
        (s_name, s_t), (d_name, d_t) = VIEWS[branch]
        rows = []
        for b in range(B):
            s, d = reduce(s_name, s_t, b), reduce(d_name, d_t, b)
            score = {"s": s, "d": d, "sd": [si + k * di for si, di in zip(s, d, strict=True)]}[variant]
            ex = [math.exp(v) for v in score]
            rows.append([v / sum(ex) for v in ex])
        gates.append(torch.tensor(rows, dtype=torch.float64))
    return gates


def naive_csa(csa, xs, variant, scope, k):
    xh = [csa.norm1(x) for x in xs]
    qv = [csa.proj(x) for x in xh]
    q, v = [t[..., :C] for t in qv], [t[..., C:] for t in qv]
    gates = naive_gates(q, variant, scope, k)
    outs = []
    for x, g, vb in zip(xh, gates, v, strict=True):
        y = csa.norm2(x + g.unsqueeze(-1) * vb)
        outs.append(y + csa.mlp(y))
    return outs


@pytest.mark.parametrize("n", [4, 9])
@pytest.mark.parametrize("scope", ["batch", "sample"])
@pytest.mark.parametrize("variant", ["s", "d", "sd"])
def test_csa_matches_naive_reference(n, scope, variant):
    csa = _module(variant, scope)
    xs = _inputs(2, n, seed=n)
    k = 1 + math.tanh(0.3)
    with torch.no_grad():
        got = csa(*xs)
        want = naive_csa(csa, xs, variant, scope, k)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, atol=1e-10, rtol=0)


@pytest.mark.parametrize("variant", ["sd", "s", "d", "sdpa"])
@pytest.mark.parametrize("scope", ["batch", "sample"])
def test_loop_equivariance(variant, scope):
    csa = _module(variant, scope)
    a, p, n, n2 = _inputs(3, 9, seed=1)
    with torch.no_grad():
        out = csa(a, p, n, n2)
        swapped = csa(p, a, n2, n)
        rotated = csa(n, n2, a, p)
    for got, idx in ((swapped, (1, 0, 3, 2)), (rotated, (2, 3, 0, 1))):
        for g, i in zip(got, idx, strict=True):
            torch.testing.assert_close(g, out[i], atol=1e-10, rtol=0)


def test_gates_sum_to_one_k_init_and_theta_gradient():
    torch.manual_seed(0)
    csa = CrossSimilarityAttention(C).double()
    assert csa.k.item() == 1.0
    xs = _inputs(2, 9)
    outs, gates = csa(*xs, return_gates=True)
    for g in gates:
        assert g.shape == (2, 9)
        torch.testing.assert_close(g.sum(-1), torch.ones(2, dtype=torch.float64), atol=1e-12, rtol=0)
    sum(o.pow(2).sum() for o in outs).backward()
    assert csa.theta.grad is not None and csa.theta.grad.abs() > 0
    assert csa.proj.weight.grad[:C].abs().sum() > 0  # QK half enters only through the distance matrices


def test_theta_only_for_sd_and_dcs_variants():
    assert not hasattr(CrossSimilarityAttention(C, variant="s"), "theta")
    assert CrossSimilarityAttention(C, variant="d").k is None
    dcs = CrossSimilarityAttention(C, variant="s", branches=2).double()
    a, p = _inputs(2, 4)[:2]
    full = _module("s")
    full.load_state_dict(dcs.state_dict())
    with torch.no_grad():  # the a/p gates of DCS equal the similarity-only gates of the 4-branch loop
        _, g2 = dcs(a, p, return_gates=True)
        _, g4 = full(a, p, *_inputs(2, 4, seed=5)[:2], return_gates=True)
    torch.testing.assert_close(g2[0], g4[0])
    torch.testing.assert_close(g2[1], g4[1])
    with pytest.raises(ValueError, match="no cross-class pair"):
        CrossSimilarityAttention(C, variant="sd", branches=2)


def test_sdpa_gates_are_row_stochastic_attention_maps():
    csa = _module("sdpa")
    _, gates = csa(*_inputs(2, 4), return_gates=True)
    for g in gates:
        assert g.shape == (2, 4, 4)
        torch.testing.assert_close(g.sum(-1), torch.ones(2, 4, dtype=torch.float64))


@pytest.mark.parametrize("scope", ["batch", "sample"])
def test_batch_scope_couples_samples(scope):
    csa = _module("sd", scope)
    xs = _inputs(2, 9, seed=3)
    changed = [x.clone() for x in xs]
    changed[P][1] = 5 * torch.randn(9, C, dtype=torch.float64).sign()  # sample 1 of p: new, spiky tokens
    with torch.no_grad():
        before, after = csa(*xs), csa(*changed)
    diff = max((b[0] - a[0]).abs().max().item() for b, a in zip(before, after, strict=True))
    if scope == "batch":
        assert diff > 1e-6
    else:
        assert diff == 0.0
