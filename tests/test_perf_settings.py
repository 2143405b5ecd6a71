"""Performance settings and the perf harness's plumbing (timings themselves are never asserted)."""

import dataclasses

import pandas as pd
import pytest
from omegaconf import OmegaConf

from fer_bench import cli
from fer_bench.config import ConfigError, build_config
from fer_bench.deploy.inference import RunModel
from fer_bench.engine.runner import build_method
from fer_bench.methods import registry, spec_of
from fer_bench.tools import perf
from fer_bench.tools.perf import TARGETS, Timing, measure_inference, measured_methods, perf_config, perf_side, run_perf

TINY = ["profile=cpu", "data.synth.subjects=10", "data.synth.per_subject=2", "data.synth.size=64",
        "data.image_size=64", "data.num_workers=0", "trainer.progress_bar=false", "logger.wandb=false"]
# A perf run as small as the harness allows: each method's spec.tiny on top (image sizes), few faces, no workers.
PERF_TINY = ["data.synth.subjects=10", "data.synth.per_subject=2", "data.synth.size=32", "data.num_workers=0",
             "trainer.progress_bar=false"]
COMPARISONS = {"<=", ">="}


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


def test_some_registered_methods_are_measured():
    assert measured_methods() == [key for key, spec in registry().items() if spec.perf]
    assert measured_methods(), "no registered method names a perf module"


@pytest.mark.parametrize("name", measured_methods())
def test_perf_module_provides_the_required_names(name):
    side = perf_side(name)
    assert callable(side.plain_loss)
    fitted = side.fitted("test_resnet") if hasattr(side, "fitted") else []
    assert all(isinstance(o, str) and "=" in o for o in fitted)
    cfg = build_config([f"method={name}", "profile=cpu", f"{side.BACKBONE_KEY}=test_resnet", *fitted])
    assert OmegaConf.select(cfg, side.BACKBONE_KEY) == "test_resnet"  # a real key of the method's config
    own = getattr(side, "TARGETS", {})
    assert not set(own) & set(TARGETS)
    for op, bound in own.values():
        assert op in COMPARISONS and isinstance(bound, int | float)
    relative = getattr(side, "RELATIVE_STEP", {})
    assert set(relative) <= set(own)
    assert set(relative.values()) <= set(measured_methods()) - {name}
    if set(own) - set(relative):  # its own targets come from its targets(run) hook
        assert callable(side.targets)


@pytest.fixture
def without_perf(monkeypatch):
    """The first measured method, re-registered with ``perf=None``."""
    name = measured_methods()[0]
    monkeypatch.setitem(registry(), name, dataclasses.replace(spec_of(name), perf=None))
    return name


def test_a_method_without_perf_module_is_refused(without_perf, tmp_path, monkeypatch):
    others = measured_methods()
    assert without_perf not in others
    with pytest.raises(ValueError, match=f"method '{without_perf}' has no perf module") as raised:
        run_perf([without_perf], [], tmp_path)
    assert all(key in str(raised.value) for key in others)
    with pytest.raises(ConfigError, match=f"perf does not measure \\['{without_perf}'\\]") as raised:
        cli.cmd_perf([f"methods={without_perf}"])
    assert str(raised.value).endswith(f"it measures {', '.join(others)}")
    assert not (tmp_path / "perf.md").exists()
    asked = []

    def record(names, overrides, out, **sizes):
        asked.append(names)
        (out / "perf.md").write_text("# fer-bench perf\n")
        return out / "perf.md"

    monkeypatch.setattr(perf, "run_perf", record)
    cli.cmd_perf([f"out={tmp_path}"])
    assert asked == [others]  # the default: every method whose spec names a perf module


def test_an_incomplete_perf_module_is_refused_by_name(monkeypatch):
    name = measured_methods()[0]
    monkeypatch.setitem(registry(), name, dataclasses.replace(spec_of(name), perf="fer_bench.methods.spec"))
    with pytest.raises(ValueError, match="fer_bench.methods.spec .* lacks BACKBONE_KEY, plain_loss"):
        perf_side(name)


def test_inference_is_measured_eager_and_through_onnx(tmp_path):
    cfg = perf_config(measured_methods()[0], PERF_TINY, "test_resnet", tiny=True)
    method = build_method(cfg)
    measured = measure_inference(RunModel(tmp_path, cfg, method, method.data_needs()), tmp_path / "export", reps=1,
                                 batch=2)
    assert (tmp_path / "export" / "model.onnx").is_file()
    assert 0 <= measured["max_abs_diff"] <= 1e-4  # onnxruntime agrees with eager PyTorch
    assert {key: len(measured[key].samples) for key in ("eager_batch", "eager_one", "onnx_batch", "onnx_one")} == {
        "eager_batch": 1, "eager_one": 4, "onnx_batch": 1, "onnx_one": 4}


@pytest.mark.slow
def test_perf_writes_every_target_with_a_verdict(tmp_path):
    methods = measured_methods()
    md = run_perf(methods, PERF_TINY, tmp_path, reps=1, steps=1, backbone="test_resnet", tiny=True, onnx=False)
    targets = pd.read_csv(tmp_path / "perf_targets.csv")
    declared = set(TARGETS).union(*(getattr(perf_side(m), "TARGETS", {}) for m in methods))
    assert set(targets["target"]) == declared and not targets.duplicated(["method", "target"]).any()
    assert set(targets.loc[targets["target"] == "framework_overhead", "method"]) == set(methods)
    assert set(targets["status"]) <= {"met", "missed"}
    counts = targets["bound"] == "<= 0"  # counts of what must never happen (e.g. gradients in a frozen part)
    assert (targets.loc[~counts, "ratio"] > 0).all()
    assert (targets.loc[counts, "ratio"] == 0).all() and (targets.loc[counts, "status"] == "met").all()
    measures = pd.read_csv(tmp_path / "perf.csv")
    for method in methods:
        names = set(measures.loc[measures["method"] == method, "measure"])
        assert {"train images/s (fer-bench)", "train images/s (plain PyTorch)", "loader images/s",
                "peak memory (training)", "latency eager (batch 1)"} <= names
    assert not measures["measure"].str.contains("onnx").any()  # onnx=False: no export
    assert "## Targets" in md.read_text()
