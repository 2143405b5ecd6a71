"""Sweep files: W&B schema, runnable expansions, and a local sweep of two trials end to end (schema of wandb/sweeps)."""

from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_ddp import TINY

from fer_bench.config import ConfigError, project_root
from fer_bench.methods import method_keys
from fer_bench.protocols import sweep

SWEEPS = sorted((project_root() / "experiments" / "sweeps").glob("*.yaml"))


def test_every_method_has_a_sweep_file():
    assert sorted(p.stem for p in SWEEPS) == method_keys()


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_sweep_file_validates_and_expands_to_runnable_overrides(path):
    trials = sweep.check_runnable(path, 3)  # schema + every trial's full config built
    spec = sweep.load_sweep(path)
    assert spec["metric"]["name"].startswith("val/") and spec["command"][-1] == "${args_no_hyphens}"
    assert f"method={path.stem}" in sweep.fixed_args(spec)
    assert len(trials) == 3 and all(len(t) == len(spec["parameters"]) for t in trials)
    assert all("." in arg.split("=")[0] for t in trials for arg in t), "flat dotted keys"


def _write(tmp_path, **changes) -> Path:
    spec = {"command": ["${env}", "fer-bench", "train", "method=baseline", "${args_no_hyphens}"], "method": "grid",
            "metric": {"name": "val/acc", "goal": "maximize"},
            "parameters": {"optim.lr": {"values": [1e-3, 1e-4]}, "data.batch_size": {"values": [16, 32]}}}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**spec, **changes}))
    return path


def test_grid_expands_in_full_then_stops(tmp_path):
    trials = sweep.expand(sweep.load_sweep(_write(tmp_path)), 10)
    assert len(trials) == 4 and ["data.batch_size=16", "optim.lr=0.001"] in trials


@pytest.mark.parametrize(("change", "message"), [
    ({"parameters": {"optim.lr": {"valuez": [1]}}}, "W&B sweep schema"),
    ({"command": ["fer-bench", "train", "${args}"]}, "'command' must be"),
    ({"parameters": {"optim": {"parameters": {"lr": {"values": [1]}}}}}, "flat dotted keys"),
])
def test_bad_sweep_files_are_named_with_the_problem(tmp_path, change, message):
    path = _write(tmp_path, **change)
    with pytest.raises(ConfigError, match=message) as err:
        sweep.load_sweep(path)
    assert str(path) in str(err.value)


def test_unknown_parameter_key_fails_the_runnable_check(tmp_path):
    path = _write(tmp_path, parameters={"optim.lrr": {"values": [1e-3]}})
    with pytest.raises(ConfigError, match="did you mean 'optim.lr'"):
        sweep.check_runnable(path)


@pytest.mark.slow
def test_two_local_trials_run_end_to_end_and_are_ranked(tmp_path):
    tiny = [a for a in TINY if not a.startswith("data.batch_size")]  # the sweep varies the batch size
    extra = [*tiny, "data.image_size=48", "trainer.max_epochs=1", f"runs_dir={tmp_path / 'runs'}"]
    table_md = sweep.run_local(project_root() / "experiments" / "sweeps" / "baseline.yaml", 2, extra,
                               tmp_path / "out")
    table = pd.read_csv(tmp_path / "out" / "trials.csv")
    assert len(table) == 2 and (table["state"] == "finished").all(), table.to_string()
    assert table["rank"].tolist() == [1, 2] and table["val/acc"].is_monotonic_decreasing
    assert table["val/acc"].between(0, 1).all() and "optim.lr" in table
    for run_dir in table["run_dir"]:
        assert (Path(run_dir) / "config.yaml").is_file() and not (Path(run_dir) / "metrics.json").exists()
    assert "Ranked by `val/acc`" in table_md.read_text()
