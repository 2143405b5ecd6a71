"""The multitask method (Savchenko, arXiv 2403.11590): head layout, losses against independent references, masks, the
two-phase schedule, SAM's two passes, and learning expression + V/A + AUs on synthetic faces."""

import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, Trainer

from fer_bench import labels as L
from fer_bench.config import build_config
from fer_bench.data.datamodule import FERDataModule
from fer_bench.engine import runner
from fer_bench.methods.multitask import module as mt_module
from fer_bench.methods.multitask.downstream import extract
from fer_bench.methods.multitask.net import (
    build_multitask_net,
    class_weights,
    expression_loss,
    va_loss,
)

TINY = ["method=multitask", "profile=cpu", "data.synth.subjects=20", "data.synth.per_subject=2",
        "data.synth.size=32", "data.synth.difficulty=easy", "data.image_size=32", "data.num_workers=0",
        "data.batch_size=16", "trainer.progress_bar=false", "logger.wandb=false"]


def _np_ccc_unbiased(x, y):
    cov = ((x - x.mean()) * (y - y.mean())).sum() / (len(x) - 1)
    return 2 * cov / (x.var(ddof=1) + y.var(ddof=1) + (x.mean() - y.mean()) ** 2)


def test_head_layout_scores_and_unbounded_va():
    net, info = build_multitask_net("mobilefacenet_tiny", num_classes=8, image_size=32)
    net.eval()
    assert net.head.out_features == 10 and info.num_features == 512
    x = torch.randn(3, 3, 32, 32)
    f = net.embed(x)
    scores = net(x)
    assert torch.equal(scores, f @ net.head.weight.T + net.head.bias)
    logits, va = net.split(scores)
    assert torch.equal(logits, scores[:, :8]) and torch.equal(va, scores[:, 8:])
    with torch.no_grad():
        net.head.bias[8:] = 5.0
    assert (net.split(net(x))[1] > 1).all()  # no tanh on V/A: clipping happens only at evaluation


def test_class_weights_reproduce_the_affectnet_table():
    # AffectNet training counts in HSEmotion's alphabetical order (notebook cell 13) → its class weights n_max / n_c
    names = L.NATIVE_TABLES["hsemotion8"].native_names
    counts = torch.tensor([24882, 3750, 3803, 6378, 134415, 74874, 25459, 14090])
    table = {"Anger": 5.40, "Contempt": 35.84, "Disgust": 35.34, "Fear": 21.07, "Happiness": 1.00,
             "Neutral": 1.80, "Sadness": 5.28, "Surprise": 9.54}
    weights = class_weights(counts)
    assert [round(float(w), 2) for w in weights] == [table[n] for n in names]
    assert class_weights(torch.tensor([4, 0, 2])).tolist() == [1.0, 0.0, 2.0]


def test_va_loss_matches_numpy_ccc_and_ignores_unlabelled_rows():
    rng = np.random.default_rng(0)
    for _ in range(10):
        n = int(rng.integers(4, 30))
        target = rng.uniform(-1, 1, (n, 2))
        target[rng.random(n) < 0.3, 0] = np.nan  # valence missing
        target[rng.random(n) < 0.3, 1] = -5.0  # ABAW's missing arousal
        target[:2] = rng.uniform(-1, 1, (2, 2))  # at least two known per column
        preds = torch.tensor(rng.normal(0, 0.6, (n, 2)), requires_grad=True)
        loss_v, loss_a = va_loss(preds, torch.tensor(target))
        for k, loss in enumerate((loss_v, loss_a)):
            known = np.isfinite(target[:, k]) & (target[:, k] >= -1)
            ref = (1 - _np_ccc_unbiased(preds.detach().numpy()[known, k], target[known, k])) / 2
            assert loss.item() == pytest.approx(ref, rel=1e-6, abs=1e-7)
        (loss_v + loss_a).backward()
        unknown_v = ~(np.isfinite(target[:, 0]) & (target[:, 0] >= -1))
        assert torch.all(preds.grad[torch.from_numpy(unknown_v), 0] == 0)
        other = preds.detach().clone()
        other[torch.from_numpy(unknown_v), 0] = 99.0  # whatever the net says where no label exists
        assert va_loss(other, torch.tensor(target))[0].item() == pytest.approx(loss_v.item(), rel=1e-9)
    constant = va_loss(torch.zeros(2, 2, requires_grad=True), torch.full((2, 2), 0.3))
    assert all(torch.isfinite(t) for t in constant)
    assert float(sum(va_loss(torch.randn(3, 2), torch.full((3, 2), float("nan"))))) == 0.0


def test_expression_loss_weights_smoothing_and_masks():
    torch.manual_seed(0)
    logits = torch.randn(6, 4, requires_grad=True)
    labels = torch.tensor([0, 1, -1, 3, 0, -1])
    w = torch.tensor([1.0, 3.0, 0.5, 2.0])
    keep = labels >= 0
    logp = F.log_softmax(logits.detach(), dim=1).numpy()
    y = labels[keep].numpy()
    rows = logp[keep.numpy()]
    nll = -rows[np.arange(len(y)), y]
    weighted_mean = (w.numpy()[y] * nll).sum() / w.numpy()[y].sum()  # CrossEntropyLoss(weight=w), MTL recipe
    loss = expression_loss(logits, labels, w)
    assert loss.item() == pytest.approx(weighted_mean, rel=1e-6)
    eps = 0.1
    q = np.eye(4)[y] * (1 - eps) + eps / 4
    soft = (-(w.numpy() * q * rows).sum(1)).mean()  # FER-only recipe: unnormalised weighted soft targets
    assert expression_loss(logits, labels, w, label_smoothing=eps).item() == pytest.approx(soft, rel=1e-6)
    loss.backward()
    assert torch.all(logits.grad[~keep] == 0)
    assert expression_loss(logits, torch.full((6,), -1), w).item() == 0.0


def test_seven_class_accuracy_drops_contempt_logit_and_images():
    logits = torch.tensor([[0.0, 0, 0, 0, 0, 0, 0, 9], [0, 5, 0, 0, 0, 0, 0, 9], [0, 0, 0, 0, 0, 0, 3, 0],
                           [4, 0, 0, 0, 0, 0, 0, 0], [0, 0, 2, 0, 0, 0, 0, 0]])
    labels = torch.tensor([7, 1, 5, 0, 2])
    z7, y7 = mt_module.drop_class(logits, labels, 7)
    manual = [(row[:7].argmax() == y) for row, y in zip(logits, labels, strict=True) if y != 7]
    assert len(y7) == 4 and float((z7.argmax(1) == y7).float().mean()) == pytest.approx(np.mean(manual))
    z7, y7 = mt_module.drop_class(logits, labels, 2)  # labels above the dropped class shift down
    assert y7.tolist() == [6, 1, 4, 0] and z7.shape == (4, 7)


def test_bad_settings_name_their_key():
    with pytest.raises(ValueError, match="sched.name"):
        runner.build_method(build_config([*TINY, "sched.name=cosine"]))
    with pytest.raises(ValueError, match="method.au_head.inputs"):
        runner.build_method(build_config([*TINY, "method.au_head.inputs=pixels"]))


class _Snapshots(Callback):
    def on_train_epoch_end(self, trainer, module):
        self.__dict__.setdefault("states", []).append(copy.deepcopy(module.net.state_dict()))
        self.__dict__.setdefault("frozen", []).append(
            all(not p.requires_grad for p in module.net.backbone.parameters()))


def _fit(method, dm, epochs, callbacks=()):
    Trainer(max_epochs=epochs, limit_train_batches=2, limit_val_batches=0, accelerator="cpu", logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            callbacks=list(callbacks)).fit(method, dm)


@pytest.mark.parametrize("bn", ["train", "eval"])
def test_phase_a_trains_the_head_only_then_phase_b_everything(bn):
    """HSEmotion's phase A sets requires_grad False under model.train(): BatchNorm statistics keep updating
    (head_phase_bn=train); head_phase_bn=eval keeps them fixed."""
    cfg = build_config([*TINY, "method.head_epochs=1", "method.head_lr=0.01", "optim.lr=0.002",
                        f"method.head_phase_bn={bn}"])
    method = runner.build_method(cfg)
    dm = FERDataModule(cfg.data, method.data_needs(), seed=0)
    start = copy.deepcopy(method.net.state_dict())
    snaps = _Snapshots()
    _fit(method, dm, 2, [snaps])
    after_a, after_b = snaps.states
    assert snaps.frozen == [True, False]
    backbone = [k for k in start if k.startswith("backbone.")]
    stats = [k for k in backbone if "running_" in k or "num_batches_tracked" in k]
    assert stats and all(torch.equal(after_a[k], start[k]) for k in backbone if k not in stats)  # weights
    assert all(torch.equal(after_a[k], start[k]) for k in stats) == (bn == "eval")
    assert not torch.equal(after_a["head.weight"], start["head.weight"])
    changed = [k for k in backbone if not torch.equal(after_b[k], after_a[k])]
    assert len(changed) > len(backbone) // 2
    head_opt, all_opt = method.trainer.optimizers
    assert [g["lr"] for g in head_opt.param_groups] == [0.01] and [g["lr"] for g in all_opt.param_groups] == [0.002]
    assert sum(p.numel() for g in all_opt.param_groups for p in g["params"]) == sum(
        p.numel() for p in method.net.parameters())
    counts = torch.bincount(dm.datasets["train"].label, minlength=8)
    assert torch.equal(method.class_weight, class_weights(counts))


def test_sam_step_equals_a_hand_written_two_pass_step():
    # SGD: an update linear in the gradient (Adam's first step, lr·sign(g), would amplify rounding noise)
    cfg = build_config([*TINY, "method.head_epochs=0", "optim.sam.enabled=true", "optim.sam.rho=0.05",
                        "optim.name=sgd", "optim.lr=0.01", "optim.weight_decay=0", "trainer.channels_last=false"])
    method = runner.build_method(cfg)
    dm = FERDataModule(cfg.data, method.data_needs(), seed=0)
    reference = copy.deepcopy(method.net)
    seen = []
    loss_of = method._loss
    method._loss = lambda batch: (seen.append(batch), loss_of(batch))[1]
    Trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=0, accelerator="cpu", logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False).fit(method, dm)
    batch = seen[0]
    assert len(seen) == 2 and seen[1] is batch  # the second pass sees the same batch

    def loss(net):
        logits, va = net.split(net(batch["image"]))
        return expression_loss(logits, batch["label"], method.class_weight) + sum(va_loss(va, batch["va"]))

    params = list(reference.parameters())
    sgd = torch.optim.SGD(params, lr=0.01, momentum=0.9, nesterov=True)
    grads = torch.autograd.grad(loss(reference), params)
    norm = torch.stack([g.norm() for g in grads]).norm()
    with torch.no_grad():
        old = [p.clone() for p in params]
        for p, g in zip(params, grads, strict=True):
            p.add_(0.05 * g / (norm + 1e-12))
    grads = torch.autograd.grad(loss(reference), params)
    with torch.no_grad():
        for p, o, g in zip(params, old, grads, strict=True):
            p.copy_(o)
            p.grad = g
    sgd.step()
    for (name, got), want in zip(method.net.named_parameters(), reference.parameters(), strict=True):
        assert torch.allclose(got, want, atol=1e-6), name


@pytest.mark.slow
def test_multitask_learns_expression_va_and_aus_with_thresholds_from_val(tmp_path, monkeypatch):
    tuned_on = []
    tune = mt_module.tune_thresholds
    monkeypatch.setattr(mt_module, "tune_thresholds", lambda s, t: (tuned_on.append(t), tune(s, t))[1])
    # 32 px, 6 epochs: test acc 0.734, CCC 0.642 / 0.713, AU F1 0.754 vs 0.376 all-positive (64 px, 3 per subject,
    # 10 epochs gave 0.833, 0.663 / 0.785, 0.885 for 1.6x the CPU time)
    cfg = build_config([*TINY, "trainer.max_epochs=6", "method.au_head.epochs=40",
                        f"runs_dir={tmp_path / 'runs'}", f"results_dir={tmp_path / 'results'}"])
    run_dir = runner.train_one(cfg)
    best = json.loads((run_dir / "metrics.json").read_text())["best"]
    assert best["test/acc"] > 1 / 8 + 0.5, best
    assert best["test/ccc_v"] > 0.5 and best["test/ccc_a"] > 0.5, best
    assert best["test/au_f1"] > best["test/au_f1_all_pos"] + 0.2, best
    assert best["test/mtl"] == pytest.approx(best["test/va"] + best["test/expr_f1"] + best["test/au_f1"], rel=1e-6)
    # thresholds were tuned on the val split's AU labels (binarised), never on test's
    records = FERDataModule(cfg.data, runner.build_method(cfg).data_needs(), seed=0, splits_from=run_dir / "splits")
    records.setup()
    columns = [f"au{a}" for a in cfg.method.au_head.aus]
    val = records.records[records.records["split"] == "val"][columns].to_numpy()
    assert len(tuned_on) == 2  # best and last
    assert all(torch.equal(t, torch.as_tensor((val >= 0.35).astype(np.int64))) for t in tuned_on)
    # extraction from the run: one row per image, in the run's own splits
    table, _ = extract.read_features(extract.command(str(run_dir), "best", None, []))
    assert len(table) == len(records.records) and table["path"].is_unique
    for name in ("train", "val", "test"):
        saved = (run_dir / "splits" / f"{name}.txt").read_text().splitlines()
        assert sorted(table.loc[table["split"] == name, "path"]) == sorted(saved)
    retest = runner.test_run(run_dir, "best")
    assert retest["test/au_f1"] == pytest.approx(best["test/au_f1"], abs=1e-6)
    assert retest["test/ccc_v"] == pytest.approx(best["test/ccc_v"], abs=1e-6)


@pytest.mark.slow
def test_best_test_epoch_row_takes_every_metric_from_its_own_epoch(tmp_path):
    """protocol=faithful: best.ckpt is the epoch of highest test accuracy, and its ``best_test_epoch`` row reports
    that checkpoint's own test (acc7, V/A and AU included), nothing from another checkpoint."""
    cfg = build_config([*TINY, "data.synth.subjects=10", "data.synth.per_subject=1", "data.image_size=48",
                        "method.protocol=faithful", "trainer.max_epochs=2", f"runs_dir={tmp_path / 'runs'}",
                        f"results_dir={tmp_path / 'results'}"])
    run_dir = runner.train_one(cfg)
    board = pd.read_csv(tmp_path / "results" / "leaderboard.csv").set_index("ckpt")
    assert sorted(board.index) == ["best_test_epoch", "last"]
    history = pd.read_csv(run_dir / "logs" / "metrics.csv").dropna(subset=["test_epoch/acc"])
    epoch = history.loc[history["test_epoch/acc"].idxmax()]
    row = board.loc["best_test_epoch"]
    assert row["selected_epoch"] == epoch["epoch"]
    assert row["test/acc"] == pytest.approx(epoch["test_epoch/acc"])  # the selected epoch's weights, tested again
    assert pd.notna(row["test/au_f1"]) and pd.notna(row["test/ccc_v"])
    metric_cols = [c for c in board.columns if c.startswith("test/") and not c.endswith(("_lo", "_hi"))]
    for kind in runner.CKPT_KINDS:  # every row: its own checkpoint's test report, column for column
        report = json.loads((run_dir / f"test_{kind}.json").read_text())["metrics"]
        row = board.loc[runner.row_kind(cfg, kind)]
        assert {c: row[c] for c in metric_cols if pd.notna(row[c])} == pytest.approx(
            {c: v for c, v in report.items() if c in metric_cols})


class _PhaseBStart(Callback):
    """Net states at the end of every epoch and at the first batch of phase B; val accuracy scripted per epoch."""

    def __init__(self, head_epochs: int, scripted: list[float]):
        self.head_epochs, self.scripted, self.states, self.start_b = head_epochs, scripted, [], None

    def on_fit_start(self, trainer, module):
        real = module.eval_metrics["val"].compute
        module.eval_metrics["val"].compute = lambda: {**real(), "acc": torch.tensor(
            self.scripted[trainer.current_epoch])}

    def on_train_epoch_end(self, trainer, module):
        self.states.append(copy.deepcopy(module.net.state_dict()))

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.current_epoch == self.head_epochs and batch_idx == 0:
            self.start_b = copy.deepcopy(module.net.state_dict())


def test_phase_b_starts_from_the_best_phase_a_epoch():
    cfg = build_config([*TINY, "method.head_epochs=2", "method.head_lr=0.05", "optim.lr=0.002"])
    method = runner.build_method(cfg)
    dm = FERDataModule(cfg.data, method.data_needs(), seed=0)
    probe = _PhaseBStart(2, [0.9, 0.1, 0.5])  # epoch 0 is the best phase-A epoch
    Trainer(max_epochs=3, limit_train_batches=2, limit_val_batches=1, num_sanity_val_steps=0, accelerator="cpu",
            logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            callbacks=[probe]).fit(method, dm)
    first, second = probe.states[0], probe.states[1]
    assert not torch.equal(first["head.weight"], second["head.weight"])
    assert all(torch.equal(probe.start_b[k], first[k]) for k in first)
