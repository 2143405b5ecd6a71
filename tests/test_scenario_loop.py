"""The engine's scenario loop is generic: a scenario method other than continual (a linear classifier on pooled
pixels, written here against the ``ScenarioMethod`` hooks) runs, resumes and reports through it."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fer_bench.config import build_config
from fer_bench.data.datamodule import DataNeeds, FERDataModule
from fer_bench.data.readers import read_records
from fer_bench.data.scenario import StepData, build_scenario, class_keys
from fer_bench.engine import runner
from fer_bench.engine import scenario as loop
from fer_bench.methods import spec_of
from fer_bench.methods.scenario import FitStage, ScenarioMethod

# A valid config for the data, trainer and logger keys; the method itself is swapped for ToyScenario below.
TINY = ["method=continual", "profile=cpu", "data.synth.subjects=9", "data.synth.per_subject=1", "data.synth.size=32",
        "data.image_size=16", "trainer.progress_bar=false", "logger.wandb=false", "seeds=[0]"]


class ToyScenario(ScenarioMethod):
    """A growing linear head on 4×4 average-pooled pixels; it records the hooks the engine calls, in order."""

    stop: int | None = None

    def __init__(self, cfg, class_names, base_classes=None):
        super().__init__(cfg, class_names)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.head = nn.Linear(48, base_classes)
        self.calls: list[str] = []

    @classmethod
    def scenario_of(cls, cfg):
        records, _ = read_records(cfg.data)
        return build_scenario(class_keys(records, "basic6"), "basic6", cfg.seed, 10, 42, 1, 3)  # 6 + 1 + 1

    def data_needs(self) -> DataNeeds:
        return DataNeeds(self.cfg.data.image_size, (0.5,) * 3, (0.5,) * 3)

    def logits(self, images):
        return self.head(self.pool(images).flatten(1))

    def forward(self, images):
        logits = self.logits(images)
        return F.pad(logits, (0, self.num_classes - logits.shape[1]), value=float("-inf"))

    def training_step(self, batch, batch_idx):
        loss = F.cross_entropy(self.logits(batch["image"]), batch["label"])
        self.log("train/loss", loss, batch_size=len(batch["label"]))
        return loss

    def _resize(self, outputs: int) -> None:
        old = self.head
        self.head = nn.Linear(48, outputs)
        with torch.no_grad():
            self.head.weight[: old.out_features] = old.weight
            self.head.bias[: old.out_features] = old.bias

    def begin_step(self, step, new_classes):
        self.calls.append(f"begin {step}")
        if step > 0:
            self._resize(self.head.out_features + new_classes)

    def step_data(self, dm, scenario, step):
        labels = dm.datasets["train"].label.numpy()
        return StepData(seen=scenario.seen(step), fixed=np.flatnonzero(labels < scenario.seen(step)), batch_size=16,
                        seed=step)

    def fit_plan(self, step):
        if step == 0:
            return [FitStage("base_a", 1, "val/loss"),
                    FitStage("base_b", 1, "val/loss", prepare=lambda: self.calls.append("prepare base_b"))]
        return [FitStage(f"inc{step}", 1, patience=1)]

    def after_step(self, dm, scenario, step):
        self.calls.append(f"after {step}")

    def stops_after(self):
        return self.stop

    def on_save_checkpoint(self, checkpoint):
        checkpoint["toy"] = {"outputs": self.head.out_features}

    def on_load_checkpoint(self, checkpoint):
        self._resize(checkpoint["toy"]["outputs"])

    def after_scenario(self, run_dir, scenario, fit):
        fit(self, self.trainer.datamodule, FitStage("extra", 1))
        return {"toy": {"toy/extra_fits": 1.0}}

    def row_label(self):
        return "toy/linear"

    def summary_facts(self):
        return {"hooks": list(self.calls)}


@pytest.fixture
def toy(monkeypatch):
    spec = dataclasses.replace(spec_of("continual"), module=f"{__name__}:ToyScenario")
    monkeypatch.setattr(loop, "spec_of", lambda key: spec)
    monkeypatch.setattr(ToyScenario, "stop", None)
    return spec


def _cfg(tmp_path):
    return build_config([*TINY, f"runs_dir={tmp_path / 'runs'}", f"results_dir={tmp_path / 'results'}"])


def test_a_toy_scenario_method_runs_through_the_hooks(tmp_path, toy):
    cfg = _cfg(tmp_path)
    run_dir = loop.run(cfg)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["hooks"] == ["begin 0", "prepare base_b", "after 0", "begin 1", "after 1", "begin 2", "after 2"]
    assert metrics["step_sizes"] == [6, 1, 1] and [len(r) for r in metrics["acc_matrix"]] == [1, 2, 3]
    assert metrics["toy"] == {"toy/extra_fits": 1.0}
    assert sorted(p.name for p in (run_dir / "logs").iterdir()) == ["base_a", "base_b", "extra", "inc1", "inc2"]
    state = torch.load(run_dir / "checkpoints" / "scenario.ckpt", weights_only=True)
    assert state["toy"] == {"outputs": 8} and state["step"] == 2 and state["rows"] == metrics["acc_matrix"]
    base = torch.load(run_dir / "checkpoints" / "base.ckpt", weights_only=True)["state_dict"]
    assert base["head.weight"].shape == (6, 48)

    # The final row of R, recomputed from the saved final model on the test split (the extra fit came after it).
    method = ToyScenario(cfg, list(metrics["order"]), base_classes=6)
    method.load_scenario_checkpoint(state)
    needs = method.data_needs()
    needs.classes = tuple(metrics["order"])
    dm = FERDataModule(cfg.data, needs, seed=cfg.seed, splits_from=run_dir / "splits")
    dm.setup()
    dataset = dm.datasets["test"]
    assert len(dataset) == len((run_dir / "splits" / "test.txt").read_text().split())
    with torch.no_grad():
        images = torch.stack([dataset[i]["image"] for i in range(len(dataset))])
        preds = method.eval().logits(images).argmax(1).numpy()
    labels = dataset.label.numpy()
    tasks = np.minimum(np.maximum(labels - 5, 0), 2)  # classes 0-5: task 0; class 6: task 1; class 7: task 2
    expected = [float((preds[tasks == j] == labels[tasks == j]).mean()) for j in range(3)]
    assert metrics["acc_matrix"][-1] == pytest.approx(expected, abs=1e-12)
    assert metrics["test_per_task"] == [int((tasks == j).sum()) for j in range(3)]

    board = pd.read_csv(tmp_path / "results" / "leaderboard.csv")
    assert board["method"].tolist() == ["toy/linear"] and board["name"].tolist() == ["toy/linear"]
    assert board["selection"].tolist() == ["val per step"] and board["toy/extra_fits"].tolist() == [1.0]


@pytest.mark.slow
def test_a_stopped_toy_scenario_resumes_to_the_same_final_model(tmp_path, toy, monkeypatch):
    whole = loop.run(_cfg(tmp_path / "a"))
    monkeypatch.setattr(ToyScenario, "stop", 0)
    partial = loop.run(_cfg(tmp_path / "b"))
    assert not (partial / "metrics.json").exists()
    monkeypatch.setattr(ToyScenario, "stop", None)
    assert loop.run(_cfg(tmp_path / "b"), resume=partial) == partial
    expected, got = (json.loads((d / "metrics.json").read_text()) for d in (whole, partial))
    assert got["acc_matrix"] == expected["acc_matrix"]
    assert got["hooks"] == ["begin 1", "after 1", "begin 2", "after 2"]  # a fresh module, from step 1 on
    final = [torch.load(d / "checkpoints" / "scenario.ckpt", weights_only=True)["state_dict"] for d in (whole, partial)]
    for key, value in final[0].items():
        torch.testing.assert_close(final[1][key], value, rtol=0, atol=0, msg=key)


def test_loops_refuse_the_other_kind_of_method(tmp_path):
    cfg = _cfg(tmp_path)
    with pytest.raises(ValueError, match="trains as a scenario of steps"):
        runner.train_one(cfg)
    baseline = build_config(["method=baseline", "profile=cpu"])
    with pytest.raises(TypeError, match="'baseline' is not a scenario method"):
        loop.scenario_of(baseline)
    assert not (tmp_path / "runs").exists()


def test_a_scenario_method_without_a_required_hook_cannot_be_built():
    class NoFitPlan(ToyScenario):
        fit_plan = ScenarioMethod.fit_plan  # the abstract declaration again: the hook is missing

    cfg = build_config(TINY)
    with pytest.raises(TypeError, match="fit_plan"):
        NoFitPlan(cfg, [f"c{i}" for i in range(8)], base_classes=6)
    assert ScenarioMethod.__abstractmethods__ == {"scenario_of", "logits", "begin_step", "step_data", "fit_plan"}
