"""SAM over Adam against a hand-written two-pass reference (Foret et al., ICLR 2021; davda54/sam)."""

import copy
import warnings

import pytest
import torch
from torch import nn

from fer_bench.models.sam import SAM

RHO, LR, BETAS, EPS = 0.05, 0.1, (0.9, 0.999), 1e-8


def tiny_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()


def batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(8, 3, generator=g, dtype=torch.float64), torch.randint(0, 2, (8,), generator=g)


def loss_fn(model, x, y):
    return nn.functional.cross_entropy(model(x), y)


def grads_at(model, params, x, y):
    with torch.no_grad():
        for p, w in zip(model.parameters(), params, strict=True):
            p.copy_(w)
    model.zero_grad()
    loss_fn(model, x, y).backward()
    return [p.grad.clone() for p in model.parameters()]


def reference_steps(model, x, y, steps):
    """Two-pass SAM + Adam written out by hand; returns parameters and Adam moments."""
    w = [p.detach().clone() for p in model.parameters()]
    m = [torch.zeros_like(p) for p in w]
    v = [torch.zeros_like(p) for p in w]
    for t in range(1, steps + 1):
        g = grads_at(model, w, x, y)
        norm = torch.sqrt(sum((gi**2).sum() for gi in g))
        g = grads_at(model, [wi + RHO * gi / (norm + 1e-12) for wi, gi in zip(w, g, strict=True)], x, y)
        for i, gi in enumerate(g):
            m[i] = BETAS[0] * m[i] + (1 - BETAS[0]) * gi
            v[i] = BETAS[1] * v[i] + (1 - BETAS[1]) * gi**2
            m_hat, v_hat = m[i] / (1 - BETAS[0] ** t), v[i] / (1 - BETAS[1] ** t)
            w[i] = w[i] - LR * m_hat / (v_hat.sqrt() + EPS)
    return w, m, v


def sam_step(model, opt, x, y, record=None):
    loss_fn(model, x, y).backward()
    opt.first_step(zero_grad=True)
    if record is not None:
        record.append([p.detach().clone() for p in model.parameters()])
    loss_fn(model, x, y).backward()
    opt.second_step(zero_grad=True)


def make_sam(model):
    return SAM(model.parameters(), torch.optim.Adam, rho=RHO, lr=LR, betas=BETAS, eps=EPS)


def test_two_steps_match_reference_parameters_and_adam_state():
    x, y = batch()
    model = tiny_model()
    want_w, want_m, want_v = reference_steps(tiny_model(), x, y, steps=2)
    opt = make_sam(model)
    for _ in range(2):
        sam_step(model, opt, x, y)
    for p, w, m, v in zip(model.parameters(), want_w, want_m, want_v, strict=True):
        state = opt.base_optimizer.state[p]
        torch.testing.assert_close(p.detach(), w, atol=1e-12, rtol=0)
        torch.testing.assert_close(state["exp_avg"], m, atol=1e-12, rtol=0)
        torch.testing.assert_close(state["exp_avg_sq"], v, atol=1e-12, rtol=0)
        assert float(state["step"]) == 2


def test_weights_change_after_each_half_step():
    x, y = batch()
    model = tiny_model()
    opt = make_sam(model)
    w0 = [p.detach().clone() for p in model.parameters()]
    record = []
    sam_step(model, opt, x, y, record)
    w_perturbed, w1 = record[0], [p.detach() for p in model.parameters()]
    assert all(not torch.equal(a, b) for a, b in zip(w0, w_perturbed, strict=True))
    assert all(not torch.equal(a, b) for a, b in zip(w_perturbed, w1, strict=True))
    norm = torch.sqrt(sum(((a - b) ** 2).sum() for a, b in zip(w_perturbed, w0, strict=True)))
    torch.testing.assert_close(norm, torch.tensor(RHO, dtype=torch.float64))


def test_closure_step_equals_manual_halves():
    x, y = batch()
    manual, closed = tiny_model(), tiny_model()
    sam_step(manual, make_sam(manual), x, y)
    opt = make_sam(closed)

    def closure():
        loss = loss_fn(closed, x, y)
        loss.backward()
        return loss

    closure()
    opt.step(closure)
    for a, b in zip(manual.parameters(), closed.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-14, rtol=0)
    with pytest.raises(RuntimeError, match="first_step"):
        opt.step()


def test_state_dict_round_trip_resumes_base_optimizer():
    x, y = batch()
    model = tiny_model()
    opt = make_sam(model)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.5)
    sam_step(model, opt, x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "lr_scheduler.step() before optimizer.step()" warning
        scheduler.step()
    saved_model, saved_opt = (
        {k: v.clone() for k, v in model.state_dict().items()},
        copy.deepcopy(opt.state_dict()),
    )
    assert saved_opt["state"] and saved_opt["param_groups"][0]["rho"] == RHO
    sam_step(model, opt, x, y)

    resumed = tiny_model()
    resumed.load_state_dict(saved_model)
    opt2 = make_sam(resumed)
    opt2.load_state_dict(saved_opt)
    assert opt2.param_groups is opt2.base_optimizer.param_groups
    assert opt2.param_groups[0]["lr"] == LR * 0.5
    sam_step(resumed, opt2, x, y)
    for a, b in zip(model.parameters(), resumed.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-14, rtol=0)
