"""fer-bench's method cores against numbers produced by the authors' official code (``tests/golden/README.md``).

Every test runs in float64 (inputs as stored, tolerance 1e-10) and float32 (inputs cast, compared to the float64
numbers at the looser tolerance the golden README gives). Hyper-parameters (loss weights, T, γ0, ρ, the scheduler)
come from the method's own experiment config, so a changed default fails here too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from fer_bench.config import build_config
from fer_bench.methods.clip_gfer.losses import ChannelGroups, cafe_loss, diversity_loss, separation_loss
from fer_bench.methods.continual.module import kd_gamma, kd_loss
from fer_bench.methods.multitask.net import class_weights, multitask_loss
from fer_bench.methods.optim import build_optimizer, build_scheduler
from fer_bench.methods.qcs.csa import CrossSimilarityAttention
from fer_bench.methods.qcs.net import qcs_loss

GOLDEN = Path(__file__).resolve().parent / "golden"
BRANCHES = ("a", "p", "n", "n2")
# (rtol, atol) per dtype; qcs_csa.npz has its own float32 tolerance (parameter gradients sum over many tokens)
TOLERANCE = {torch.float64: (1e-10, 1e-10), torch.float32: (1e-5, 1e-6)}
CSA_TOLERANCE = {torch.float64: (1e-10, 1e-10), torch.float32: (1e-4, 1e-4)}


@pytest.fixture(params=[torch.float64, torch.float32], ids=["fp64", "fp32"])
def dtype(request):
    return request.param


def load(name: str) -> dict[str, np.ndarray]:
    with np.load(GOLDEN / name) as d:
        return {k: d[k] for k in d.files}


def tensor(array: np.ndarray, dtype: torch.dtype, grad: bool = False) -> torch.Tensor:
    t = torch.from_numpy(np.array(array))
    t = t.to(dtype) if t.is_floating_point() else t
    return t.requires_grad_(grad)


def check(actual, expected: np.ndarray, tol: tuple[float, float], what: str) -> None:
    actual = actual.detach().double().numpy() if isinstance(actual, torch.Tensor) else np.asarray(actual)
    np.testing.assert_allclose(actual, expected, rtol=tol[0], atol=tol[1], err_msg=what)


# ------------------------------------------------------------------------------------------------ QCS
@pytest.mark.parametrize("case", ["sd0", "sd037", "s", "d"])
def test_csa_block_matches_official(case, dtype):
    d, tol = load("qcs_csa.npz"), CSA_TOLERANCE[dtype]
    variant = "sd" if case.startswith("sd") else case
    scope = build_config(["method=qcs"]).method.csa.scope  # the official min/max over the whole batch
    csa = CrossSimilarityAttention(int(d["C"]), variant, scope=scope).to(dtype)
    state = {k.removeprefix("param."): torch.from_numpy(d[k]) for k in d if k.startswith("param.")}
    if variant == "sd":
        state["theta"] = torch.from_numpy(d[f"{case}.theta"])
    csa.load_state_dict(state)  # strict: the golden parameter set is exactly the module's
    xs = [tensor(d[f"x_{b}"], dtype, grad=True) for b in BRANCHES]
    outs, gates = csa(*xs, return_gates=True)
    objective = sum((o * tensor(d[f"cot_{b}"], dtype)).sum() for o, b in zip(outs, BRANCHES, strict=True))
    objective.backward()

    seen = {f"{case}.theta"}

    def expect(key, actual):
        seen.add(f"{case}.{key}")
        check(actual, d[f"{case}.{key}"], tol, f"{case}.{key}")

    expect("objective", objective)
    for b, out, gate, x in zip(BRANCHES, outs, gates, xs, strict=True):
        expect(f"out_{b}", out)
        expect(f"gate_{b}", gate)
        expect(f"grad.x_{b}", x.grad)
    for name, param in csa.named_parameters():
        expect(f"grad.{name}", param.grad)
    if variant == "sd":
        expect("k", csa.k)
    else:  # the single-term ablations have no θ: k undefined, no gradient
        assert csa.k is None and np.isnan(d[f"{case}.k"]) and float(d[f"{case}.grad.theta"]) == 0.0
        seen |= {f"{case}.k", f"{case}.grad.theta"}
    assert seen == {k for k in d if k.startswith(f"{case}.")}  # every stored quantity was compared


def test_qcs_eight_term_loss_matches_official(dtype):
    d, tol = load("qcs_loss.npz"), TOLERANCE[dtype]
    logits = [tensor(z, dtype, grad=True) for z in d["logits"]]
    y, y_n = torch.from_numpy(d["y"]), torch.from_numpy(d["y_n"])
    total, base, cross = qcs_loss(logits[:4], logits[4:], y, y_n)
    total.backward()
    check(total, d["loss"], tol, "loss")
    check(base, d["terms"][:4].mean(), tol, "base part")
    check(cross, d["terms"][4:].mean(), tol, "cross part")
    check(torch.stack([z.grad for z in logits]), d["grad_logits"], tol, "grad_logits")


def test_sam_adam_with_exponential_lr_matches_official(dtype):
    """Three SAM(Adam) steps in ``FERMethod.manual_step``'s order, the QCS recipe's optimizer and schedule."""
    d, tol = load("sam_adam.npz"), TOLERANCE[dtype]
    cfg = build_config(["method=qcs"])
    assert cfg.optim.sam.rho == float(d["rho"]) and cfg.sched.gamma == float(d["gamma"])
    model = torch.nn.Linear(5, 3).to(dtype)
    with torch.no_grad():
        model.weight.copy_(torch.from_numpy(d["w0"]))
        model.bias.copy_(torch.from_numpy(d["b0"]))
    optimizer = build_optimizer(model.parameters(), OmegaConf.merge(cfg.optim, {"lr": float(d["lr"])}))
    scheduler = build_scheduler(optimizer, cfg.sched, cfg.trainer.max_epochs)
    for t in range(3):
        x, y = tensor(d["x"][t], dtype), torch.from_numpy(d["y"][t])
        check(optimizer.param_groups[0]["lr"], d["lr_used"][t], tol, f"lr used at step {t}")
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        check(optimizer._grad_norm(), d["grad_norm"][t], tol, f"grad norm {t}")
        optimizer.first_step(zero_grad=True)
        check(model.weight, d["w_perturbed"][t], tol, f"perturbed weight {t}")
        check(model.bias, d["b_perturbed"][t], tol, f"perturbed bias {t}")
        perturbed = torch.nn.functional.cross_entropy(model(x), y)
        perturbed.backward()
        optimizer.second_step(zero_grad=True)
        check(loss, d["loss"][t], tol, f"loss {t}")
        check(perturbed, d["loss_perturbed"][t], tol, f"perturbed loss {t}")
        check(model.weight, d["w_after"][t], tol, f"weight after step {t}")
        check(model.bias, d["b_after"][t], tol, f"bias after step {t}")
        if t + 1 == int(d["sched_step_after"]):  # one epoch = the official run's first two steps
            scheduler.step()


# ------------------------------------------------------------------------------------------------ CAFE
def test_cafe_channel_losses_match_official(dtype):
    d, tol = load("cafe_losses.npz"), TOLERANCE[dtype]
    m = build_config(["method=clip_gfer"]).method
    assert (m.lam, m.beta, m.drop) == (float(d["lam_sep"]), float(d["lam_div"]), int(d["n_drop"]))
    groups = ChannelGroups(d["features"].shape[1], int(d["n_groups"]), m.groups)
    assert groups.width == int(d["cnum"])
    labels, drop = torch.from_numpy(d["labels"]), tensor(d["drop_mask"], dtype)  # the mask the official call drew
    x = tensor(d["features"], dtype, grad=True)
    check(groups.group_max(x), d["group_max"], tol, "group_max")
    check(groups.group_max(x * drop), d["group_max_dropped"], tol, "group_max_dropped")

    l_sep = separation_loss(x, labels, groups, drop)
    check(l_sep, d["l_sep"], tol, "l_sep")
    check(torch.autograd.grad(l_sep, x)[0], d["grad_sep"], tol, "grad_sep")
    l_div = diversity_loss(x, groups, m.div)
    check(l_div, d["l_div"], tol, "l_div")
    check(torch.autograd.grad(l_div, x)[0], d["grad_div"], tol, "grad_div")

    logits = tensor(d["logits"], dtype, grad=True)
    total, parts = cafe_loss(logits, x, labels, groups, drop, m.lam, m.beta, m.div)
    check(parts["l_cls"], d["ce"], tol, "ce")
    check(total, d["total"], tol, "total")
    total.backward()
    check(x.grad, d["grad_total_features"], tol, "grad_total_features")
    check(logits.grad, d["grad_total_logits"], tol, "grad_total_logits")


def test_cafe_drop_mask_has_the_official_layout():
    """n_drop zeros in each official mask group: six of 73 channels and a last one of 74 (channels 438…511, so
    channel 511, never pooled, can still be dropped)."""
    d, m = load("cafe_losses.npz"), build_config(["method=clip_gfer"]).method
    groups = ChannelGroups(512, 7, m.groups)
    bounds = [0, 73, 146, 219, 292, 365, 438, 512]
    generator = torch.Generator().manual_seed(0)
    masks = [torch.from_numpy(d["drop_mask"])] + [groups.drop_mask(m.drop, generator) for _ in range(64)]
    for mask in masks:
        zeros = [int((mask[a:b] == 0).sum()) for a, b in zip(bounds, bounds[1:], strict=False)]
        assert zeros == [int(d["n_drop"])] * 7
    assert any(mask[511] == 0 for mask in masks[1:])  # P(never in 64 draws) = (64/74)^64 ≈ 1e-4


# ------------------------------------------------------------------------------------------------ HSEmotion
def test_hsemotion_multitask_loss_matches_official(dtype):
    d, tol = load("hse_mtl_loss.npz"), TOLERANCE[dtype]
    m = build_config(["method=multitask"]).method
    # fer-bench's weights are float32 (as the notebook's); the fp64 case uses the stored float64 weights
    np.testing.assert_allclose(class_weights(torch.from_numpy(d["class_counts"])).numpy(), d["class_weights"],
                               rtol=1e-6)
    preds = tensor(d["preds"], dtype, grad=True)
    target = tensor(np.stack([d["valence"], d["arousal"]], axis=1), dtype)
    weight = tensor(d["class_weights"], dtype) if m.class_weights else None
    total, parts = multitask_loss(preds[:, :8], preds[:, 8:], torch.from_numpy(d["labels"]), target, weight,
                                  m.label_smoothing)
    total.backward()
    check(total, d["loss"], tol, "loss")
    check(parts["loss_ce"], d["loss_expr"], tol, "loss_expr")
    check(parts["loss_v"], d["loss_v"], tol, "loss_v")
    check(parts["loss_a"], d["loss_a"], tol, "loss_a")
    check(1 - 2 * parts["loss_v"], d["ccc_v"], tol, "ccc_v")
    check(1 - 2 * parts["loss_a"], d["ccc_a"], tol, "ccc_a")
    check(preds.grad, d["grad_preds"], tol, "grad_preds")


# ------------------------------------------------------------------------------------------------ continual
@pytest.mark.parametrize("case", ["mild", "hard"])
def test_continual_step_loss_matches_official(case, dtype):
    d, tol = load("cfer_kd_loss.npz"), TOLERANCE[dtype]
    kd_cfg = build_config(["method=continual"]).method.kd
    gamma = kd_gamma(int(d[f"{case}.i"]), kd_cfg.gamma0)
    check(gamma, d[f"{case}.gamma"], tol, "gamma")
    assert kd_cfg.T == float(d[f"{case}.T"])
    teacher, labels = tensor(d[f"{case}.teacher"], dtype), torch.from_numpy(d[f"{case}.labels"])
    student = tensor(d[f"{case}.student"], dtype, grad=True)
    loss, cls, kd = kd_loss(student, teacher, labels, gamma, kd_cfg.T)
    for name, value in (("loss", loss), ("cls", cls), ("kd", kd)):
        check(value, d[f"{case}.{name}"], tol, name)
        grad = torch.autograd.grad(value, student, retain_graph=True)[0]
        check(grad, d[f"{case}.grad_student" if name == "loss" else f"{case}.grad_{name}"], tol, f"grad {name}")
    if case == "hard":  # the confidently wrong rows keep their classification gradient (no clipping)
        rows = torch.from_numpy(d["hard.hard_rows"])
        assert torch.autograd.grad(cls, student)[0][rows].abs().sum() > 0
