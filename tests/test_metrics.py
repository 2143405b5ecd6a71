"""Metric suite vs independent references (scikit-learn, numpy), hand-worked examples and CL test vectors."""

from __future__ import annotations

import math
import warnings
from datetime import timedelta

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import free_port
from sklearn import metrics as skm

from fer_bench.metrics import (
    AUF1,
    CCC,
    ClassificationMetrics,
    abaw,
    accuracy,
    au_f1,
    ccc,
    ccc_loss,
    confusion_matrix,
    continual,
    macro_f1,
    per_class_accuracy,
    tune_thresholds,
    uar,
)

N_CASES = 50


def _np_ccc(x: np.ndarray, y: np.ndarray, ddof: int = 0) -> np.ndarray:
    cov = ((x - x.mean(0)) * (y - y.mean(0))).sum(0) / (len(x) - ddof)
    return 2 * cov / (x.var(0, ddof=ddof) + y.var(0, ddof=ddof) + (x.mean(0) - y.mean(0)) ** 2)


def _splits(rng: np.random.Generator, n: int, k: int) -> list[slice]:
    """k uneven consecutive slices covering range(n) (some may be empty)."""
    cuts = np.sort(rng.integers(0, n + 1, size=k - 1))
    bounds = [0, *cuts.tolist(), n]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _random_labels(rng: np.random.Generator) -> tuple[int, np.ndarray, np.ndarray]:
    """Class count, target and preds drawn from random (often partial, different) subsets of the classes."""
    c = int(rng.integers(2, 11))
    n = int(rng.integers(1, 300))
    t_classes = rng.choice(c, size=int(rng.integers(1, c + 1)), replace=False)
    p_classes = rng.choice(c, size=int(rng.integers(1, c + 1)), replace=False)
    target = rng.choice(t_classes, size=n)
    preds = np.where(rng.random(n) < 0.5, target, rng.choice(p_classes, size=n))
    return c, target, preds


# ---------------------------------------------------------------- classification


def test_classification_hand_example():
    # target  0 0 1 1 1 2 ; preds 0 3 1 1 0 2 ; 5 classes (3 only predicted, 4 absent from both)
    # confmat rows (true) 0: [1,0,0,1,0]  1: [1,2,0,0,0]  2: [0,0,1,0,0]
    # acc 4/6; recalls 1/2, 2/3, 1 -> UAR (over true classes 0,1,2) = 0.72222
    # F1 = 2TP/(2TP+FP+FN): c0 2/4 = .5, c1 4/5 = .8, c2 1, c3 0/1 = 0 -> macro over {0..3} = 0.575,
    # over all 5 classes = 2.3/5 = 0.46
    target = torch.tensor([0, 0, 1, 1, 1, 2])
    preds = torch.tensor([0, 3, 1, 1, 0, 2])
    cm = confusion_matrix(preds, target, 5)
    assert cm.tolist() == [[1, 0, 0, 1, 0], [1, 2, 0, 0, 0], [0, 0, 1, 0, 0], [0] * 5, [0] * 5]
    assert accuracy(preds, target).item() == pytest.approx(4 / 6)
    assert uar(preds, target, 5).item() == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert macro_f1(preds, target, 5).item() == pytest.approx(0.575)
    assert macro_f1(preds, target, 5, all_classes=True).item() == pytest.approx(0.46)
    pc = per_class_accuracy(preds, target, 5)
    assert pc[:3].tolist() == pytest.approx([0.5, 2 / 3, 1.0]) and pc[3:].isnan().all()


def test_classification_matches_sklearn():
    rng = np.random.default_rng(0)
    for _ in range(N_CASES):
        c, target, preds = _random_labels(rng)
        t, p = torch.from_numpy(target), torch.from_numpy(preds)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref_uar = skm.balanced_accuracy_score(target, preds)
            ref_f1 = skm.f1_score(target, preds, average="macro")
        assert accuracy(p, t).item() == pytest.approx(skm.accuracy_score(target, preds), abs=1e-6)
        assert uar(p, t, c).item() == pytest.approx(ref_uar, abs=1e-6)
        labels = np.unique(target)
        ref_recall = skm.recall_score(target, preds, labels=labels, average="macro", zero_division=0)
        assert uar(p, t, c).item() == pytest.approx(ref_recall, abs=1e-6)
        assert macro_f1(p, t, c).item() == pytest.approx(ref_f1, abs=1e-6)
        ref_all = skm.f1_score(target, preds, labels=np.arange(c), average="macro", zero_division=0)
        assert macro_f1(p, t, c, all_classes=True).item() == pytest.approx(ref_all, abs=1e-6)
        ref_cm = skm.confusion_matrix(target, preds, labels=np.arange(c))
        assert np.array_equal(confusion_matrix(p, t, c).numpy(), ref_cm)
        ref_pc = skm.recall_score(target, preds, labels=np.arange(c), average=None, zero_division=0)
        pc = per_class_accuracy(p, t, c).numpy()
        present = np.isin(np.arange(c), target)
        assert np.allclose(pc[present], ref_pc[present]) and np.isnan(pc[~present]).all()


def test_classification_logits_and_validation():
    logits = torch.tensor([[2.0, 0.1, 0.3], [0.0, 1.0, 3.0], [0.2, 0.9, 0.1]])
    target = torch.tensor([0, 1, 1])
    assert accuracy(logits, target).item() == pytest.approx(2 / 3)  # argmax 0, 2, 1
    assert confusion_matrix(logits, target, 3).tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 0]]
    with pytest.raises(ValueError, match="class ids"):
        confusion_matrix(torch.tensor([0, 3]), torch.tensor([0, 1]), 3)
    with pytest.raises(ValueError, match="expected preds"):
        accuracy(torch.tensor([0, 1, 2]), torch.tensor([0, 1]))


def test_classification_metric_accumulates_exactly():
    rng = np.random.default_rng(1)
    for _ in range(N_CASES):
        c, target, preds = _random_labels(rng)
        t, p = torch.from_numpy(target), torch.from_numpy(preds)
        m = ClassificationMetrics(c)
        for s in _splits(rng, len(t), int(rng.integers(1, 6))):
            logits = torch.nn.functional.one_hot(p[s], c).float() if rng.random() < 0.5 else p[s]
            m.update(logits, t[s])
        out = m.compute()
        assert set(out) == {"acc", "uar", "f1"}
        assert torch.equal(m.confmat(), confusion_matrix(p, t, c))
        assert out["acc"].item() == pytest.approx(accuracy(p, t).item())
        assert out["uar"].item() == pytest.approx(uar(p, t, c).item())
        assert out["f1"].item() == pytest.approx(macro_f1(p, t, c).item())
        assert torch.allclose(m.per_class(), per_class_accuracy(p, t, c), equal_nan=True)


def test_metrics_merge_like_ddp_ranks_with_unequal_counts():
    # sum states: merging two "ranks" holding 7 and 4 samples equals one pass over all 11
    rng = np.random.default_rng(2)
    target = torch.from_numpy(rng.integers(0, 4, 11))
    preds = torch.from_numpy(rng.integers(0, 4, 11))
    x, y = torch.randn(11, 2, dtype=torch.float64), torch.randn(11, 2, dtype=torch.float64)
    scores, aus = torch.rand(11, 3), torch.from_numpy(rng.integers(0, 2, (11, 3)))
    ranks = [(ClassificationMetrics(4), CCC(2), AUF1(3)) for _ in range(2)]
    for (cm, cc, au), s in zip(ranks, (slice(0, 7), slice(7, 11)), strict=True):
        cm.update(preds[s], target[s])
        cc.update(x[s], y[s])
        au.update(scores[s], aus[s])
    for a, b in zip(*ranks, strict=True):
        a.merge_state(b)
    cm, cc, au = ranks[0]
    assert torch.equal(cm.confmat(), confusion_matrix(preds, target, 4))
    assert torch.allclose(cc.compute().double(), ccc(x, y), atol=1e-6)
    assert au.compute().item() == pytest.approx(au_f1(scores >= 0.5, aus)[1].item())


# ---------------------------------------------------------------- regression


def test_ccc_hand_example():
    # x = 1 2 3, y = 2 4 6: means 2, 4; population var 2/3, 8/3, cov 4/3, (mx - my)^2 = 4
    # CCC = (8/3) / (2/3 + 8/3 + 4) = 8/22; unbiased: var 1, 4, cov 2 -> 4 / (1 + 4 + 4) = 4/9
    x, y = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 4.0, 6.0])
    assert ccc(x, y).item() == pytest.approx(8 / 22)
    assert ccc(x, y, unbiased=True).item() == pytest.approx(4 / 9)
    assert ccc_loss(x, y).item() == pytest.approx(1 - 4 / 9)
    assert ccc_loss(x, y, unbiased=False).item() == pytest.approx(1 - 8 / 22)
    assert ccc(y, y).item() == pytest.approx(1.0)
    m = CCC()
    m.update(x, y)
    assert m.compute().item() == pytest.approx(8 / 22)


def test_ccc_matches_numpy():
    rng = np.random.default_rng(3)
    for _ in range(N_CASES):
        n, d = int(rng.integers(2, 400)), int(rng.integers(1, 4))
        y = rng.uniform(-1, 1, (n, d))
        x = 0.7 * y + rng.normal(rng.normal(0, 0.3), rng.uniform(0.05, 1.0), (n, d))
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        assert np.allclose(ccc(xt, yt).numpy(), _np_ccc(x, y), atol=1e-10)
        assert np.allclose(ccc(xt, yt, unbiased=True).numpy(), _np_ccc(x, y, ddof=1), atol=1e-10)
        assert np.allclose(ccc(xt[:, 0], yt[:, 0]).item(), _np_ccc(x[:, 0], y[:, 0]), atol=1e-10)
        assert np.allclose(ccc(xt.float(), yt.float()).numpy(), _np_ccc(x, y), atol=1e-5)
        m = CCC(d)
        for s in _splits(rng, n, int(rng.integers(1, 6))):
            m.update(xt[s].float(), yt[s].float())
        ref = _np_ccc(x.astype(np.float32), y.astype(np.float32))
        assert np.allclose(m.compute().numpy(), ref, atol=1e-5)


def test_ccc_loss_finite_and_differentiable_on_degenerate_batch():
    preds = torch.tensor([0.5, 0.5], requires_grad=True)
    loss = ccc_loss(preds, torch.tensor([0.5, 0.5]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(preds.grad).all()
    preds = torch.randn(8, 2, requires_grad=True)
    (ccc_loss(preds, torch.randn(8, 2)) / 2).sum().backward()
    assert preds.grad.abs().sum() > 0


# ---------------------------------------------------------------- action units


def test_au_f1_hand_example():
    # AU0: TP 1 (row 0), FP 1 (row 1), FN 1 (row 2) -> 2/4 = 0.5; AU1: TP 2 -> 1.0;
    # AU2: no positives and none predicted -> 0 (zero_division=0); mean 0.5
    preds = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]])
    target = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    per_au, mean = au_f1(preds, target)
    assert per_au.tolist() == pytest.approx([0.5, 1.0, 0.0]) and mean.item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="0 or 1"):
        au_f1(preds, target - 1)


def test_au_f1_matches_sklearn_and_metric_accumulates():
    rng = np.random.default_rng(4)
    for _ in range(N_CASES):
        n, a = int(rng.integers(1, 300)), int(rng.integers(1, 13))
        target = (rng.random((n, a)) < rng.uniform(0, 0.6, a)).astype(np.int64)
        scores = np.clip(0.4 * target + rng.random((n, a)) * 0.8, 0, 1).astype(np.float32)
        thr = rng.choice([0.3, 0.5, 0.7], size=a).astype(np.float32)
        binary = (scores >= thr).astype(np.int64)
        ref = [skm.f1_score(target[:, k], binary[:, k], zero_division=0) for k in range(a)]
        per_au, mean = au_f1(torch.from_numpy(binary), torch.from_numpy(target))
        assert np.allclose(per_au.numpy(), ref, atol=1e-6) and mean.item() == pytest.approx(np.mean(ref))
        m = AUF1(a, threshold=torch.from_numpy(thr))
        for s in _splits(rng, n, int(rng.integers(1, 6))):
            m.update(torch.from_numpy(scores[s]), torch.from_numpy(target[s]))
        assert np.allclose(m.per_au().numpy(), ref, atol=1e-6)
        assert m.compute().item() == pytest.approx(np.mean(ref), abs=1e-6)


def test_tune_thresholds_constructed_example():
    # AU0: scores .15 .35 .6 .8, target 0 1 1 1: t = .1 -> F1 6/7; .2-.3 -> 1.0; .4-.6 -> .8 => 0.2 (1st best)
    # AU1: scores .1 .65 .75 .9, target 0 0 1 1: t = .7 -> 1.0; .6 -> .8; .8 -> 2/3 => 0.7
    # AU2: scores .05 .05 .05 .55, target 0 0 0 1: F1 = 1 for t in .1-.5 => tie, smallest 0.1
    scores = torch.tensor([[0.15, 0.1, 0.05], [0.35, 0.65, 0.05], [0.6, 0.75, 0.05], [0.8, 0.9, 0.55]])
    target = torch.tensor([[0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 1]])
    thr = tune_thresholds(scores, target)
    assert thr.tolist() == pytest.approx([0.2, 0.7, 0.1])
    m = AUF1(3, threshold=thr)
    m.update(scores, target)
    assert m.per_au().tolist() == pytest.approx([1.0, 1.0, 1.0])


def test_tune_thresholds_matches_brute_force():
    rng = np.random.default_rng(5)
    grid = np.round(np.arange(0.1, 1.0, 0.1), 1)
    for _ in range(12):
        n, a = int(rng.integers(5, 200)), int(rng.integers(1, 6))
        target = (rng.random((n, a)) < 0.3).astype(np.int64)
        scores = np.clip(0.3 * target + rng.random((n, a)) * 0.7, 0, 1).astype(np.float32)
        thr = tune_thresholds(torch.from_numpy(scores), torch.from_numpy(target), tuple(grid)).numpy()
        for k in range(a):
            f1s = [skm.f1_score(target[:, k], scores[:, k] >= np.float32(g), zero_division=0) for g in grid]
            assert thr[k] == pytest.approx(grid[int(np.argmax(f1s))])


# ------------------------------------------- continual learning (Lopez-Paz & Ranzato 2017; Chaudhry et al. 2018)

R = [[80], [85, 70], [60, 65, 90]]


def test_continual_test_vectors():
    assert continual.incremental_accuracies(R).tolist() == pytest.approx([80, 77.5, 71.6666667])
    s = continual.summary(R)
    assert list(s) == ["cl/avg_inc_acc", "cl/final_acc", "cl/final_task_acc", "cl/bwt", "cl/forgetting",
                       "cl/forgetting_first"]
    assert s["cl/avg_inc_acc"] == pytest.approx(76.3888889)
    assert s["cl/final_acc"] == pytest.approx(71.6666667)
    assert s["cl/final_task_acc"] == pytest.approx(71.6666667)
    assert s["cl/bwt"] == pytest.approx(-12.5)
    assert s["cl/forgetting"] == pytest.approx(15.0)
    assert s["cl/forgetting_first"] == pytest.approx(12.5)
    # group sizes (100, 10, 10): A_2 = (100*60 + 10*65 + 10*90) / 120 = 62.917; task mean unchanged
    a = continual.incremental_accuracies(R, group_sizes=(100, 10, 10))
    assert a[2] == pytest.approx(62.9166667)
    assert continual.final_acc(R, (100, 10, 10)) == pytest.approx(62.9166667)
    assert continual.final_task_acc(R) == pytest.approx(71.6666667)


def test_continual_input_forms():
    arr = np.array([[80, np.nan, np.nan], [85, 70, np.nan], [60, 65, 90]])
    assert continual.summary(arr) == continual.summary(R)
    assert continual.summary(R, group_sizes=[5, 5, 5]) == pytest.approx(continual.summary(R))
    one = continual.summary([[55.0]])
    assert one["cl/avg_inc_acc"] == 55.0 and math.isnan(one["cl/bwt"]) and math.isnan(one["cl/forgetting"])
    with pytest.raises(ValueError):
        continual.summary([[80], [85]])
    with pytest.raises(ValueError):
        continual.incremental_accuracies(R, group_sizes=(1, 2))


# ---------------------------------------------------------------- ABAW


def test_abaw_scores_drop_sentinels():
    rng = np.random.default_rng(6)
    n = 120
    expr_t = rng.integers(-1, 8, n)
    expr_p = np.where(rng.random(n) < 0.6, np.clip(expr_t, 0, 7), rng.integers(0, 8, n))
    va_t = rng.uniform(-1, 1, (n, 2))
    va_t[rng.random(n) < 0.1, rng.integers(0, 2)] = -5
    va_p = va_t + rng.normal(0, 0.5, (n, 2))
    au_t = rng.integers(0, 2, (n, 12))
    au_t[rng.random(n) < 0.1] = -1
    au_p = rng.integers(0, 2, (n, 12))

    keep = expr_t >= 0
    ref_expr = skm.f1_score(expr_t[keep], expr_p[keep], labels=np.arange(8), average="macro", zero_division=0)
    keep = (va_t > -5).all(1)
    ref_va = _np_ccc(np.clip(va_p[keep], -1, 1), va_t[keep])
    keep = (au_t >= 0).all(1)
    ref_au = np.mean([skm.f1_score(au_t[keep, k], au_p[keep, k], zero_division=0) for k in range(12)])

    t = torch.from_numpy
    out = abaw.mtl_score(expr=(t(expr_p), t(expr_t)), va=(t(va_p), t(va_t)), au=(t(au_p), t(au_t)))
    assert out["expr_f1"] == pytest.approx(ref_expr, abs=1e-6)
    assert [out["ccc_v"], out["ccc_a"]] == pytest.approx(ref_va.tolist())
    assert out["va"] == pytest.approx(ref_va.mean())
    assert out["au_f1"] == pytest.approx(ref_au, abs=1e-6)
    assert out["mtl"] == pytest.approx(ref_expr + ref_va.mean() + ref_au, abs=1e-5)


def test_abaw_expr_counts_absent_class_as_zero():
    # classes 0 and 1 perfectly predicted, the other 6 never appear: F1 = 2/8 over all 8 ABAW classes
    assert abaw.expr_score(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 1])) == pytest.approx(0.25)


# ---------------------------------------------------------------- real DDP (2 gloo processes)


def _ddp_worker(rank: int, port: int) -> list[bool]:
    """One of two gloo ranks holding 9 and 4 samples; returns which synced values equal the reference."""
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                            timeout=timedelta(seconds=60))
    g = torch.Generator().manual_seed(7)
    target, preds = torch.randint(0, 5, (13,), generator=g), torch.randint(0, 5, (13,), generator=g)
    x, y = torch.randn(13, 2, generator=g), torch.randn(13, 2, generator=g)
    scores, aus = torch.rand(13, 4, generator=g), torch.randint(0, 2, (13, 4), generator=g)
    s = slice(0, 9) if rank == 0 else slice(9, 13)  # unequal per-rank counts
    cm, cc, au = ClassificationMetrics(5), CCC(2), AUF1(4)
    cm.update(preds[s], target[s])
    cc.update(x[s], y[s])
    au.update(scores[s], aus[s])
    try:
        out = (cm.confmat(), cm.compute()["f1"], cc.compute(), au.per_au(), au.compute())
    finally:
        dist.destroy_process_group()
    ref = (confusion_matrix(preds, target, 5), macro_f1(preds, target, 5), ccc(x, y),
           *au_f1(scores >= 0.5, aus))
    return [torch.allclose(a.double(), b.double(), atol=1e-6) for a, b in zip(out, ref, strict=True)]


@pytest.mark.slow
def test_metrics_exact_under_ddp():
    # this process is rank 0, a spawned process rank 1
    port = free_port()
    child = mp.get_context("spawn").Process(target=_ddp_worker, args=(1, port))
    child.start()
    try:
        assert _ddp_worker(0, port) == [True] * 5
    finally:
        child.join(60)
    assert child.exitcode == 0
