"""Continual basic → compound FER (arXiv 2308.06197): units on hand-made inputs, then tiny synthetic scenarios."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from fer_bench.config import build_config
from fer_bench.data.samplers import TaskSampler
from fer_bench.data.scenario import build_scenario, class_keys, class_orders
from fer_bench.engine import scenario as continual_runner
from fer_bench.methods.continual.fewshot import scores as fewshot_scores
from fer_bench.methods.continual.memory import ReplayMemory, budget, per_class
from fer_bench.methods.continual.module import Continual, kd_gamma, kd_loss
from fer_bench.metrics import continual as clm
from fer_bench.models.heads import ExpandableHead

GAMMA_TABLE = [.1000, .0764, .0584, .0446, .0341, .0261, .0199, .0152, .0116, .0089, .0068, .0052, .0040, .0030,
               .0023]
TINY = ["method=continual", "profile=cpu", "data.synth.subjects=9", "data.synth.per_subject=1", "data.synth.size=32",
        "data.image_size=24", "data.batch_size=16", "method.step_batch_size=8", "trainer.max_epochs=3",
        "method.step_epochs=2", "method.max_steps=3", "method.fewshot.enabled=false", "trainer.progress_bar=false",
        "logger.wandb=false", "seeds=[0]"]


def _cfg(tmp_path, *extra):
    return build_config([*TINY, *extra, f"runs_dir={tmp_path / 'runs'}", f"results_dir={tmp_path / 'results'}"])


# ------------------------------------------------------------------------------------------------ losses, schedule
def test_gamma_schedule_matches_the_spec_table():
    assert [kd_gamma(i) for i in range(15)] == pytest.approx(GAMMA_TABLE, abs=1e-4)


def test_kd_loss_against_numpy():
    rng = np.random.default_rng(0)
    student, teacher = rng.normal(size=(4, 8)), rng.normal(size=(4, 6))
    labels = np.array([0, 7, 3, 6])
    gamma, T = 0.0764, 3.0

    def softmax(z):
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    cls = -np.log(softmax(student)[np.arange(4), labels]).mean()  # from the logits: no probability clipping
    padded = np.concatenate([teacher, np.zeros((4, 2))], axis=1)  # zero-padded teacher logits
    kd = -(softmax(padded / T) * np.log(softmax(student / T))).sum(1).mean()  # soft-target CE, no T²
    total, got_cls, got_kd = kd_loss(torch.tensor(student), torch.tensor(teacher), torch.tensor(labels), gamma, T)
    assert float(got_cls) == pytest.approx(cls, rel=1e-6)
    assert float(got_kd) == pytest.approx(kd, rel=1e-6)
    assert float(total) == pytest.approx((1 - gamma) * cls + gamma * kd, rel=1e-6)


# ------------------------------------------------------------------------------------------------ head, trainable set
def test_head_grows_keeping_old_logits():
    torch.manual_seed(0)
    head = ExpandableHead(16, 6, hidden=(8,), dropout=0.2).eval()
    x = torch.randn(5, 16)
    before = head(x)
    head.grow(2)
    after = head(x)
    assert after.shape == (5, 8)
    torch.testing.assert_close(after[:, :6], before)
    assert torch.all(head.out.bias[6:] == 0)


def test_step_trainable_set_and_frozen_batch_norm(tmp_path):
    cfg = _cfg(tmp_path, "method.step_trainable=[layer4]", "method.strategy=psmr_kd")
    method = Continual(cfg, [f"c{i}" for i in range(8)], base_classes=6)
    method.begin_step(1, 1)
    trainable = {n for n, p in method.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("backbone.layer4.", "head.")) for n in trainable), sorted(trainable)
    assert not any("bn" in n for n in trainable), "BatchNorm affine parameters stay frozen in compound steps"
    assert not any(n.startswith("teacher.") for n in trainable)
    method.eval()  # as the previous step's inference leaves it; Lightning does not switch modes at fit start
    method.on_train_start()
    norms = [m for m in method.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms) and not method.teacher.training
    assert method.head.training and all(m.training for m in method.head.modules()), "head dropout is active"
    assert not any(m.training for m in method.teacher.modules())


# ------------------------------------------------------------------------------------------------ memory
def test_memory_budget_and_modes():
    assert budget(4347, 21, 0.3) == (1304, 62)
    assert per_class("grow", 1304, 62, 10) == 62
    assert per_class("limit", 1304, 62, 10) == 130


def test_psmr_keeps_the_top_ranked_by_raw_logit_and_never_rescores():
    memory = ReplayMemory()
    # Logit ranking (c) differs from softmax ranking: image 11 has the top class-0 logit but a lower probability.
    logits = torch.tensor([[2.0, 0.0], [3.0, 5.0], [1.0, -3.0], [0.5, 0.4]])
    indices = [10, 11, 12, 13]
    memory.select(0, indices, 2, logits[:, 0].numpy())
    assert memory.slots[0].tolist() == [11, 10]
    by_prob = logits.softmax(1)[:, 0].numpy()
    memory.select(1, indices, 2, by_prob)
    assert memory.slots[1].tolist() == [12, 10], \
        "softmax ranking differs, so the logit case above proves the logit is used"
    memory.truncate(1)
    assert memory.state_dict()["slots"] == {"0": [11], "1": [12]} and len(memory) == 2
    state = memory.state_dict()
    again = ReplayMemory()
    again.load_state_dict(json.loads(json.dumps(state)))
    assert again.state_dict() == memory.state_dict() and again.digest() == memory.digest()


def test_random_memory_is_seeded():
    a, b = ReplayMemory(), ReplayMemory()
    a.select(3, range(100), 5, seed=7)
    b.select(3, range(100), 5, seed=7)
    assert a.state_dict() == b.state_dict() and len(set(a.slots[3].tolist())) == 5


def test_class_scores_logit_or_prob(tmp_path):
    method = Continual(_cfg(tmp_path), [f"c{i}" for i in range(6)]).eval()
    x = torch.rand(3, 3, 32, 32)
    logits = method.logits(x)
    torch.testing.assert_close(method.class_scores(x, 2), logits[:, 2])
    method.cfg.method.psmr.score = "prob"
    torch.testing.assert_close(method.class_scores(x, 2), logits.softmax(1)[:, 2])


# ------------------------------------------------------------------------------------------------ data
def test_class_orders_and_scenario():
    from fer_bench.labels import COMPOUNDS

    orders = class_orders(list(COMPOUNDS), 10, 42)
    assert orders == class_orders(list(COMPOUNDS), 10, 42) and len({tuple(o) for o in orders}) == 10
    assert all(sorted(o) == sorted(COMPOUNDS) for o in orders)
    records = pd.DataFrame({"expression": [0, 1, 2, 3, 4, 5, 6, None, None, 7],
                            "compound": [None] * 7 + [3, 12, None]})
    keys = class_keys(records)
    assert pd.isna(keys[0]) and keys.tolist()[1:7] == ["happy", "sad", "surprise", "fear", "disgust", "anger"]
    assert keys[7] == "sadly angry" and keys[8] == "appalled" and pd.isna(keys[9])  # neutral, contempt: none
    scenario = build_scenario(keys, "basic6", 1, 10, 42)
    assert scenario.step_sizes == (6, 1, 1) and scenario.classes[:6] == ("happy", "sad", "surprise", "fear",
                                                                         "disgust", "anger")
    full = build_scenario(pd.Series(["happy", "sad", *COMPOUNDS]), "basic6", 0, 10, 42, increment=2)
    assert full.step_sizes == (2, 2, 2, 2, 2, 2, 2, 2, 1) and list(full.classes[2:]) == orders[0]
    assert full.task_of(np.array([0, 1, 2, 3, 4, 16])).tolist() == [0, 0, 1, 1, 2, 8]
    with pytest.raises(ValueError, match="n_orders"):
        build_scenario(keys, "basic6", 10, 10, 42)


def test_task_sampler_redraw_fixed_and_shards():
    fixed, pool = list(range(20)), list(range(100, 150))
    redraw = TaskSampler(fixed, pool, 12, batch_size=8, redraw=True, seed=1)
    kept = TaskSampler(fixed, pool, 12, batch_size=8, redraw=False, seed=1)
    assert set(redraw.new_items(0)) != set(redraw.new_items(1))
    assert set(kept.new_items(0)) == set(kept.new_items(1))
    assert len(kept) == 32  # 32 items: whole batches of 8, remainder dropped
    shards = [TaskSampler(fixed, pool, 12, 4, False, seed=1, rank=r, world=2) for r in range(2)]
    items = [list(s) for s in shards]
    assert len(items[0]) == len(items[1]) == 16 and not set(items[0]) & set(items[1])
    tiny = TaskSampler([], [1, 2, 3], 3, batch_size=8, redraw=False)
    assert len(list(tiny)) == 8  # smaller than one batch: wrapped up to one batch


# ------------------------------------------------------------------------------------------------ metrics
def test_continual_metrics_on_a_hand_made_matrix():
    R = [[0.80], [0.85, 0.70], [0.60, 0.65, 0.90]]
    m = continual_runner.cl_metrics(R, [10, 10, 10])
    assert m["cl/avg_inc_acc"] == pytest.approx(0.763888889)
    assert m["cl/final_acc"] == pytest.approx(0.716666667)
    assert m["cl/bwt"] == pytest.approx(-0.125)
    assert m["cl/forgetting"] == pytest.approx(0.15)
    assert m["cl/new_acc"] == pytest.approx((0.70 + 0.90) / 2)
    assert m["cl/old_acc_final"] == pytest.approx(0.625)
    got = np.array(clm.old_new_accuracies(R, [100, 10, 10]))
    np.testing.assert_allclose(got, [[0.85, 0.70], [(60 + 6.5) / 110, 0.90]])

def test_no_forgetting_prints_as_zero_never_minus_zero(tmp_path, capsys):
    """Old tasks keep their accuracy: BWT and both forgetting variants are +0.0 in the metrics, metrics.json,
    the leaderboard files and the console line (Avalanche forgetting was once −BWT = −0.0)."""
    from fer_bench import cli
    from fer_bench.results import leaderboard

    R = [[0.8], [0.8, 0.6], [0.8, 0.6, 0.9]]
    m = continual_runner.cl_metrics(R, [10, 10, 10])
    for key in ("cl/bwt", "cl/forgetting", "cl/forgetting_first"):
        assert m[key] == 0.0 and math.copysign(1.0, m[key]) == 1.0, (key, m[key])
    assert "-0.0" not in json.dumps(m)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.json").write_text(json.dumps({"strategy": "psmr_kd", "cl": m | {"cl/new_acc": 0.75}}))
    cli._print_headline([run_dir])
    line = capsys.readouterr().out.splitlines()[1]
    assert "bwt 0.0000" in line and "forgetting 0.0000" in line and "-0.0" not in line, line
    # float noise around zero (a mean over class orders) also prints as 0.0000
    assert leaderboard.number(-1e-17) == "0.0000" and leaderboard.number(-0.00004) == "0.0000"
    rows = [{"run_id": f"r{seed}", "name": "continual/psmr_kd", "method": "continual/psmr_kd", "data": "cfee",
             "seed": seed, "ckpt": "final", "selection": "val per step", **m} for seed in (0, 1)]
    leaderboard.append(tmp_path / "results", rows)
    assert "-0.0" not in (tmp_path / "results" / "leaderboard.md").read_text()
    assert "-0.0" not in (tmp_path / "results" / "leaderboard.csv").read_text()



def test_fewshot_paper_metric_is_degenerate_and_nway_is_not():
    labels = np.repeat(np.arange(7), 10)  # 6 base classes + the new one (head index 6)
    always_new = np.full_like(labels, 6)
    s = fewshot_scores(always_new, labels, 6)
    assert s["paper_acc"] == 1.0
    assert s["nway_bacc"] == pytest.approx(1 / 7)
    assert s["nway_new_precision"] == pytest.approx(1 / 7) and s["nway_base_acc"] == 0.0


# ------------------------------------------------------------------------------------------------ state
def test_checkpoint_state_roundtrip(tmp_path):
    names = [f"c{i}" for i in range(8)]
    method = Continual(_cfg(tmp_path), names, base_classes=6)
    method.begin_step(1, 1)
    method.begin_step(2, 1)
    method.memory.select(0, [4, 5, 6], 2, [0.1, 0.9, 0.5])
    ckpt = {"state_dict": method.state_dict()}
    method.on_save_checkpoint(ckpt)
    fresh = Continual(_cfg(tmp_path), names, base_classes=6)
    fresh.load_scenario_checkpoint(ckpt)
    assert fresh.head.num_classes == 8 and fresh.step == 2 and fresh.memory.state_dict()["slots"] == {"0": [5, 6]}
    for key, value in method.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[key], value)


# ------------------------------------------------------------------------------------------------ tiny scenarios
def _teacher_equals_base(run_dir) -> None:
    base = torch.load(run_dir / "checkpoints" / "base.ckpt", weights_only=True)
    final = torch.load(run_dir / "checkpoints" / "scenario.ckpt", weights_only=True)["state_dict"]
    for part in ("backbone", "head"):
        for key, value in base[part].items():
            torch.testing.assert_close(final[f"teacher.{part}.{key}"], value, rtol=0, atol=0)


def test_tiny_scenario_end_to_end(tmp_path):
    cfg = _cfg(tmp_path, "method.gradcam=true")
    run_dir = continual_runner.run(cfg)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["step_sizes"] == [6, 1, 1]
    assert [len(r) for r in metrics["acc_matrix"]] == [1, 2, 3]
    state = torch.load(run_dir / "checkpoints" / "scenario.ckpt", weights_only=True)
    assert state["continual"]["num_outputs"] == 8 and state["state_dict"]["head.out.weight"].shape[0] == 8
    _teacher_equals_base(run_dir)  # the teacher never changes
    total, m = budget(sum(1 for _ in open(run_dir / "splits" / "train.txt")), 8, cfg.method.mem_fraction)
    assert all(len(v) <= m for v in state["continual"]["memory"]["slots"].values())
    assert sorted(map(int, state["continual"]["memory"]["slots"])) == list(range(8))
    for name in ("plots/acc_matrix.png", "plots/gradcam.png", "plots/confusion_final.png", "config.yaml"):
        assert (run_dir / name).is_file(), name
    board = pd.read_csv(tmp_path / "results" / "leaderboard.csv")
    assert board["method"].tolist() == ["continual/psmr_kd"]
    for col in ("cl/avg_inc_acc", "cl/final_acc", "cl/bwt", "cl/forgetting", "cl/new_acc", "cl/overall_acc"):
        assert math.isfinite(board[col].iloc[0]), col


@pytest.mark.slow
def test_resume_mid_scenario_gives_the_same_final_matrix(tmp_path):
    whole = continual_runner.run(_cfg(tmp_path / "a"))
    partial = continual_runner.run(_cfg(tmp_path / "b", "method.stop_after=1"))
    assert not (partial / "metrics.json").exists()
    assert torch.load(partial / "checkpoints" / "scenario.ckpt", weights_only=True)["step"] == 1
    resumed = continual_runner.run(_cfg(tmp_path / "b"), resume=partial)
    assert resumed == partial
    expected = json.loads((whole / "metrics.json").read_text())
    got = json.loads((resumed / "metrics.json").read_text())
    assert got["acc_matrix"] == expected["acc_matrix"]
    assert got["memory_per_class"] == expected["memory_per_class"]
    # Accuracies of a tiny model tie easily; the final weights (BatchNorm statistics included) must match exactly.
    final = [torch.load(d / "checkpoints" / "scenario.ckpt", weights_only=True)["state_dict"] for d in (whole, resumed)]
    assert final[0].keys() == final[1].keys()
    for key, value in final[0].items():
        torch.testing.assert_close(final[1][key], value, rtol=0, atol=0, msg=key)
    _teacher_equals_base(resumed)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["finetune", "random_replay", "kd_only", "joint"])
def test_baseline_strategies_run(tmp_path, strategy):
    run_dir = continual_runner.run(_cfg(tmp_path, f"method.strategy={strategy}", "method.gradcam=false",
                                        "method.max_steps=2"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["strategy"] == strategy and len(metrics["acc_matrix"]) == 2
    assert (len(metrics["memory_per_class"]) > 0) == (strategy == "random_replay")


@pytest.mark.slow
def test_fewshot_reports_both_protocols(tmp_path):
    run_dir = continual_runner.run(_cfg(tmp_path, "method.max_steps=2", "method.gradcam=false",
                                        "method.fewshot.enabled=true", "method.fewshot.shots=[1]",
                                        "method.fewshot.classes=1", "method.fewshot.epochs=1",
                                        "method.fewshot.repeats=4"))
    fewshot = json.loads((run_dir / "metrics.json").read_text())["fewshot"]
    assert {"fewshot_paper/1shot_acc", "fewshot_nway/1shot_bacc", "fewshot_nway/1shot_new_precision"} <= set(fewshot)


@pytest.mark.slow
def test_ddp_spawn_scenario_keeps_one_memory(tmp_path):
    """Two CPU ranks: each fit checks (``on_fit_start``) that every rank replays the same memory."""
    cfg = _cfg(tmp_path, "trainer.strategy=ddp_spawn", "trainer.devices=2", "method.max_steps=2",
               "method.gradcam=false")
    run_dir = continual_runner.run(cfg)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert len(metrics["acc_matrix"]) == 2 and metrics["memory_per_class"]


def test_eval_on_is_refused_with_a_clear_message(tmp_path):
    from fer_bench.config import ConfigError

    with pytest.raises(ConfigError, match="not supported for method=continual"):
        _cfg(tmp_path, "eval_on=[synthetic:wild]")  # at config time: every entry point (train, bench) refuses it
