"""Performance settings and the perf harness's plumbing (timings themselves are never asserted)."""

import pandas as pd
import pytest

from fer_bench.config import build_config
from fer_bench.engine.runner import build_method
from fer_bench.tools.perf import TARGETS, Timing, run_perf

TINY = ["profile=cpu", "data.synth.subjects=10", "data.synth.per_subject=2", "data.synth.size=64",
        "data.image_size=64", "data.num_workers=0", "trainer.progress_bar=false", "logger.wandb=false"]


@pytest.mark.parametrize("name", ["baseline", "qcs"])
def test_compile_wraps_the_training_networks_in_place(name):
    plain = build_method(build_config([f"method={name}", *TINY]))
    compiled = build_method(build_config([f"method={name}", *TINY, "trainer.compile=true"]))
    compiled.setup("fit")
    targets = compiled.compile_targets()
    assert targets and all(m._compiled_call_impl is not None for m in targets)
    assert list(compiled.state_dict()) == list(plain.state_dict())  # checkpoints stay interchangeable
    if name == "qcs":
        assert compiled.net.trunk in targets and compiled.net.csa in targets


def test_timing_reports_median_and_spread():
    t = Timing([3.0, 1.0, 2.0, 10.0])
    assert t.median == 2.5 and t.spread == (1.0, 10.0)


@pytest.mark.slow
def test_perf_writes_every_target_with_a_verdict(tmp_path):
    md = run_perf(["baseline", "qcs", "clip_gfer"], TINY, tmp_path, reps=2, steps=3, backbone="test_resnet")
    targets = pd.read_csv(tmp_path / "perf_targets.csv")
    assert set(targets["target"]) == set(TARGETS)
    assert set(targets["status"]) <= {"met", "missed"}
    frozen = targets["target"] == "cafe_frozen_tower_gradients"
    assert (targets.loc[~frozen, "ratio"] > 0).all()
    assert targets.loc[frozen, "ratio"].tolist() == [0]  # CAFE's tower never joins a backward pass
    measures = pd.read_csv(tmp_path / "perf.csv")
    for method in ("baseline", "qcs", "clip_gfer"):
        names = set(measures.loc[measures["method"] == method, "measure"])
        assert {"train images/s (fer-bench)", "train images/s (plain PyTorch)", "loader images/s",
                "peak memory (training)"} <= names
    assert "## Targets" in md.read_text()
