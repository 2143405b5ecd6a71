"""The example plugin (examples/plugin_method, a centre-loss baseline): found through the entry-point group
``fer_bench.methods``, its keys validated by the config, trained by ``fer-bench bench``; and the registry's refusal
of a plugin that takes a built-in method's key.

The plugin is not installed into the environment: its ``src/`` goes on the path beside a ``*.dist-info`` folder of the
kind pip writes into site-packages (``METADATA``, ``entry_points.txt``), which ``importlib.metadata`` finds there.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_ddp import TINY

from fer_bench import cli
from fer_bench.config import ConfigError, build_config
from fer_bench.methods import ENTRY_POINT_GROUP, method_keys, registry, spec_of

REPO = Path(__file__).resolve().parents[1]
PLUGIN_SRC = REPO / "examples" / "plugin_method" / "src"
PLUGIN_ENTRY = {"centre_loss": "fer_bench_centre_loss:SPEC"}  # as examples/plugin_method/pyproject.toml declares


def write_dist_info(folder: Path, distribution: str, entries: dict[str, str]) -> Path:
    """``folder`` holding the installed-distribution record of ``distribution`` with ``entries`` in the
    ``fer_bench.methods`` group."""
    info = folder / f"{distribution.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 0.1.0\n")
    lines = [f"[{ENTRY_POINT_GROUP}]", *(f"{name} = {ref}" for name, ref in entries.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return folder


@contextmanager
def on_path(folders: list[Path], packages: tuple[str, ...]):
    """``folders`` first on ``sys.path`` and a fresh registry; afterwards the path, the registry and the modules as
    before (``packages``, the plugin's top-level modules, unloaded)."""
    saved = list(sys.path)
    sys.path[:0] = [str(f) for f in folders]
    importlib.invalidate_caches()
    registry.cache_clear()
    try:
        yield
    finally:
        sys.path[:] = saved
        for name in [m for m in sys.modules if m.split(".")[0] in packages]:
            del sys.modules[name]
        importlib.invalidate_caches()
        registry.cache_clear()


@pytest.fixture
def plugin(tmp_path):
    """The example plugin registered through its entry point for one test (its record in ``tmp_path/site``)."""
    with on_path([PLUGIN_SRC, write_dist_info(tmp_path / "site", "fer-bench-centre-loss", PLUGIN_ENTRY)],
                 ("fer_bench_centre_loss",)):
        yield importlib.import_module("fer_bench_centre_loss")


def test_the_plugin_registers_through_its_entry_point_and_its_keys_are_validated(plugin):
    assert spec_of("centre_loss") is plugin.SPEC and "centre_loss" in method_keys()
    assert spec_of("baseline").module == "fer_bench.methods.baseline.module:Baseline"  # built-ins still there
    cfg = build_config(["method=centre_loss", "profile=cpu", "method.lam=0.1"])
    assert (cfg.method.name, cfg.method.lam, cfg.method.alpha) == ("centre_loss", 0.1, 0.5)
    # from the experiment YAML inside the package: its top level and its cpu profile
    assert cfg.sched.warmup_epochs == 1 and cfg.backbone.name == "test_resnet" and cfg.data.image_size == 96
    with pytest.raises(ConfigError, match=r"unknown config key 'method\.foo'"):
        build_config(["method=centre_loss", "method.foo=1"])
    with pytest.raises(ConfigError, match=r"did you mean 'method\.lam'"):
        build_config(["method=centre_loss", "method.lamb=0.1"])
    with pytest.raises(ConfigError, match=r"method\.alpha=0\.0"):  # the spec's check
        build_config(["method=centre_loss", "method.alpha=0.0"])
    with pytest.raises(ConfigError, match=r"optim\.sam\.enabled"):
        build_config(["method=centre_loss", "optim.sam.enabled=true"])


def test_without_its_entry_point_the_plugin_is_not_a_method(tmp_path):
    with on_path([PLUGIN_SRC], ("fer_bench_centre_loss",)):  # importable, but not registered
        with pytest.raises(ConfigError, match="unknown method 'centre_loss'"):
            build_config(["method=centre_loss"])
    assert "centre_loss" not in method_keys()  # on_path restored the registry


def test_class_centres_move_by_eq_4_of_wen_et_al(plugin):
    from fer_bench_centre_loss.centres import ClassCentres

    centres = ClassCentres(num_classes=3, dim=2)
    features = torch.tensor([[2.0, 0.0], [4.0, 0.0], [0.0, 3.0]], requires_grad=True)
    labels = torch.tensor([0, 0, 1])
    loss = centres.loss(features, labels)
    assert loss.item() == pytest.approx(0.5 * (4 + 16 + 9) / 3)
    loss.backward()
    assert torch.allclose(features.grad, features.detach() / 3)  # d/dx of ½‖x − c‖² / B, with c = 0
    # Δc_0 = ((0 − 2) + (0 − 4)) / (1 + 2) = −2; Δc_1 = (0 − 3) / (1 + 1) = −1.5; class 2 is not in the batch.
    centres.update(features, labels, alpha=0.5)
    assert torch.allclose(centres.centres, torch.tensor([[1.0, 0.0], [0.0, 0.75], [0.0, 0.0]]))
    # A second rank with the same batch: sums and counts double, Δc_0 = −2·6 / (1 + 4).
    doubled = ClassCentres(num_classes=3, dim=2)
    doubled.update(features, labels, alpha=0.5, sum_over_ranks=lambda t: 2 * t)
    assert torch.allclose(doubled.centres[0], torch.tensor([1.2, 0.0]))
    assert [name for name, _ in doubled.named_buffers()] == ["centres"] and not list(doubled.parameters())


def test_a_plugin_may_not_take_a_built_in_key(tmp_path, capsys):
    (tmp_path / "impostor.py").write_text(
        "from dataclasses import dataclass\n"
        "from fer_bench.methods.spec import MethodSpec\n\n\n"
        "@dataclass\nclass Config:\n    name: str = 'baseline'\n    protocol: str = 'corrected'\n\n\n"
        "SPEC = MethodSpec(key='baseline', summary='a second baseline', config=Config, module='impostor:Module')\n")
    site = write_dist_info(tmp_path / "site", "impostor", {"baseline": "impostor:SPEC"})
    with on_path([tmp_path, site], ("impostor",)):
        with pytest.raises(ValueError, match=r"two methods register the key 'baseline': "
                                             r"fer_bench\.methods\.baseline\.module:Baseline and impostor:Module"):
            registry()
        registry.cache_clear()
        assert cli.main(["bench", "method=baseline"]) == 2  # the CLI names the clash instead of a traceback
        assert "fer-bench: error: two methods register the key 'baseline'" in capsys.readouterr().err
    assert spec_of("baseline").module == "fer_bench.methods.baseline.module:Baseline"


@pytest.mark.slow
def test_cli_bench_trains_the_plugin_method_and_ranks_it(plugin, tmp_path):
    """Two epochs on the shared tiny data set: the run, its leaderboard rows and its moved centres. (Leaving chance
    level needs about 630 faces and 8 epochs, over a minute on 2 cores: too long for a plugin check.)"""
    env = {k: v for k, v in os.environ.items() if k != "FER_BENCH_SESSION"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(cli.__file__).parents[1]), str(PLUGIN_SRC), str(tmp_path / "site"),
                                         env.get("PYTHONPATH", "")])
    args = ["bench", "method=centre_loss", *TINY, *plugin.SPEC.tiny, "trainer.max_epochs=2",
            f"runs_dir={tmp_path / 'runs'}", f"results_dir={tmp_path / 'results'}"]
    out = subprocess.run([sys.executable, "-m", "fer_bench.cli", *args], capture_output=True, text=True, cwd=REPO,
                         env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    board = pd.read_csv(tmp_path / "results" / "leaderboard.csv")
    assert board["method"].tolist() == ["centre_loss", "centre_loss"] and board["ckpt"].tolist() == ["best", "last"]
    run_dir = Path(board["run_dir"][0])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["last"]["test/acc"] == pytest.approx(board["test/acc"][1])
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    centres = state["centres.centres"]  # moved by the run (they start at zero), one per class
    assert centres.shape[0] == 7 and centres.abs().sum(1).min() > 0

