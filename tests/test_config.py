import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from fer_bench import methods
from fer_bench.config import ConfigError, build_config, faithful
from fer_bench.config.choices import choice, choice_fields
from fer_bench.config.schema import RunConfig
from fer_bench.methods import MethodSpec, registry, spec_of

ROOT = Path(__file__).resolve().parents[1]


def test_merge_order_defaults_card_experiment_profile_overrides():
    cfg = build_config(["method=baseline", "data=synthetic", "profile=cpu", "optim.lr=0.5"])
    assert cfg.data.reader == "synthetic"  # from the data card
    assert cfg.data.synth.per_subject == 4  # data card over the package default (2)
    assert cfg.backbone.name == "test_resnet"  # profile over experiment (resnet18)
    assert cfg.optim.lr == 0.5  # command line over profile
    assert cfg.optim.weight_decay == 1e-4  # experiment value kept
    assert cfg.method.name == "baseline" and cfg.profile == "cpu"


def test_unknown_key_names_key_source_and_suggestion():
    with pytest.raises(ConfigError) as e:
        build_config(["optim.lrr=0.1"])
    msg = str(e.value)
    assert "optim.lrr" in msg and "command line" in msg and "'optim.lr'" in msg


def test_wrong_type_names_key():
    with pytest.raises(ConfigError, match="trainer.max_epochs"):
        build_config(["trainer.max_epochs=many"])


def test_bad_choice_and_unknown_selectors():
    with pytest.raises(ConfigError, match="data.on_error"):
        build_config(["data.on_error=ignore"])
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        build_config(["method=nope"])
    with pytest.raises(ConfigError, match="no data card 'nope'"):
        build_config(["data=nope"])
    with pytest.raises(ConfigError, match="no profile 'tpu'"):
        build_config(["profile=tpu"])


def test_unknown_key_in_experiment_file_names_the_file(tmp_path, monkeypatch):
    (tmp_path / "experiments").mkdir()
    (tmp_path / "data_modules").mkdir()
    (tmp_path / "data_modules" / "synthetic.yaml").write_text("reader: synthetic\n")
    (tmp_path / "experiments" / "baseline.yaml").write_text("optim:\n  learning_rate: 0.1\n")
    monkeypatch.setenv("FER_BENCH_HOME", str(tmp_path))
    with pytest.raises(ConfigError) as e:
        build_config([])
    assert "optim.learning_rate" in str(e.value) and "baseline.yaml" in str(e.value)


HEAVY = ("cv2", "lightning", "pandas", "timm", "torch")


def test_cli_rejects_typo_before_importing_the_training_stack():
    out = subprocess.run([sys.executable, "-m", "fer_bench.cli", "train", "optim.lrr=0.1"], capture_output=True,
                         text=True)
    assert out.returncode == 2
    assert "did you mean 'optim.lr'" in out.stderr and "Traceback" not in out.stderr
    # the config, the registry, every method's package and config schema, a typo key and a bad choice: no
    # deep-learning library, no OpenCV, no pandas
    probe = textwrap.dedent(f"""
        import importlib, sys
        from fer_bench.config import ConfigError, build_config
        from fer_bench.methods import registry
        for spec in registry().values():
            importlib.import_module(spec.config.__module__)
        for bad in (["optim.lrr=0.1"], ["method=qcs", "method.csa.variant=foo"], ["data.synth.classes=basic9"]):
            try:
                build_config(bad)
            except ConfigError:
                pass
            else:
                raise SystemExit(f"{{bad}} was accepted")
        print(sorted(m for m in {HEAVY!r} if m in sys.modules))
    """)
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_bench_refuses_a_bad_choice_before_any_run_directory(tmp_path):
    """``fer-bench bench`` with a value outside a key's choices stops in the config (no Lightning imported), names
    the key, the value, the choices and the closest one, and leaves no run or results directory."""
    probe = textwrap.dedent(f"""
        import sys
        from fer_bench import cli
        for value in ("foo", "sdpaa"):
            print(cli.main(["bench", "method=qcs", f"method.csa.variant={{value}}", "runs_dir=runs",
                            "results_dir=results"]))
        print(sorted(m for m in {HEAVY!r} if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "FER_BENCH_HOME": str(ROOT)})
    assert out.stdout.split("\n")[:3] == ["2", "2", "[]"], out.stderr
    first, second = [line for line in out.stderr.splitlines() if line.startswith("fer-bench: error")]
    assert "'method.csa.variant' = 'foo'" in first and "sd, s, d, sdpa" in first
    assert "did you mean 'sdpa'?" in second
    assert list(tmp_path.iterdir()) == []


def _wrong(choices: tuple) -> str:
    return f"{next(c for c in choices if c is not None)}x"


@pytest.mark.parametrize("method", sorted(registry()))
def test_every_choice_key_of_every_method_refuses_a_wrong_value(method):
    keys = choice_fields(spec_of(method).config(), "method.")
    assert "method.protocol" in keys
    for key, choices in keys.items():
        with pytest.raises(ConfigError) as e:
            build_config([f"method={method}", f"{key}={_wrong(choices)}"])
        assert f"'{key}' = '{_wrong(choices)}'" in str(e.value) and "did you mean" in str(e.value)


def test_every_choice_key_of_the_run_schema_refuses_a_wrong_value():
    keys = choice_fields(RunConfig())
    assert {"data.on_error", "optim.name", "sched.name", "data.synth.classes", "eval.ci_method"} <= set(keys)
    for key, choices in keys.items():
        with pytest.raises(ConfigError, match=f"'{key}' = '{_wrong(choices)}'"):
            build_config([f"{key}={_wrong(choices)}"])
    assert build_config(["data.check=off"]).data.check == "off"  # YAML reads `off` as false


def test_choice_field_default_must_be_a_choice():
    assert choice("a", "b").default == "a" and choice(None, "a").metadata["choices"] == (None, "a")
    assert choice("a", "b", default="b").default == "b"
    with pytest.raises(ValueError, match="default 'c' is not one of"):
        choice("a", "b", default="c")


def _flat(node: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in node.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


@pytest.mark.parametrize("method", sorted(registry()))
def test_experiment_states_only_method_keys_that_differ_from_the_schema(method):
    """``method.*`` keys of experiments/<method>.yaml differ from the schema default; a profile's differ from what
    lies below it (experiment or default) unless a faithful row sets the key (the profile then overrides it)."""
    experiment = OmegaConf.to_container(OmegaConf.load(ROOT / "experiments" / f"{method}.yaml"))
    defaults = _flat({"method": OmegaConf.to_container(OmegaConf.structured(spec_of(method).config()))})
    faithful_keys = {row["key"] for row in faithful.rows(experiment.get("faithful"), "")}
    faithful_keys |= {row["key"] for data in (experiment.get("faithful") or {}).get("data", {})
                      for row in faithful.rows(experiment["faithful"], data)}
    stated = _flat({"method": experiment.get("method") or {}})
    assert [k for k, v in stated.items() if defaults[k] == v] == []
    below = {**defaults, **stated}
    for name, block in (experiment.get("profiles") or {}).items():
        restated = [k for k, v in _flat({"method": block.get("method") or {}}).items()
                    if below[k] == v and k not in faithful_keys]
        assert restated == [], f"profiles.{name}"


def test_shared_profiles_lie_under_each_experiments_own_block():
    gpu = {m: build_config([f"method={m}", "profile=gpu"]) for m in ("baseline", "qcs")}
    for cfg in gpu.values():  # experiments/profiles/gpu.yaml
        assert (cfg.trainer.accelerator, cfg.data.num_workers, cfg.data.pin_memory) == ("gpu", 8, True)
    assert gpu["baseline"].trainer.precision == "bf16-mixed"  # baseline.yaml profiles.gpu
    assert gpu["qcs"].trainer.precision == "32-true"  # the schema's: qcs.yaml has no gpu block
    bf16 = build_config(["method=qcs", "profile=gpu_bf16"])  # gpu_bf16.yaml extends gpu.yaml
    assert (bf16.trainer.precision, bf16.data.num_workers, bf16.profile) == ("bf16-mixed", 8, "gpu_bf16")
    cpu = build_config(["method=continual", "profile=cpu"])
    assert (cpu.trainer.accelerator, cpu.data.num_workers) == ("cpu", 0)  # shared, then continual.yaml's block


def _project(tmp_path, monkeypatch, profiles: dict[str, str]) -> Path:
    (tmp_path / "experiments" / "profiles").mkdir(parents=True)
    (tmp_path / "data_modules").mkdir()
    (tmp_path / "data_modules" / "synthetic.yaml").write_text("reader: synthetic\n")
    (tmp_path / "experiments" / "baseline.yaml").write_text("profiles:\n  fast: {trainer: {max_epochs: 2}}\n")
    for name, text in profiles.items():
        (tmp_path / "experiments" / "profiles" / f"{name}.yaml").write_text(text)
    monkeypatch.setenv("FER_BENCH_HOME", str(tmp_path))
    return tmp_path


def test_shared_profile_errors_name_the_file(tmp_path, monkeypatch):
    _project(tmp_path, monkeypatch, {"a": "extends: b\n", "b": "extends: a\n", "typo": "trainer: {max_epoch: 1}\n"})
    with pytest.raises(ConfigError, match="extend each other in a circle: a -> b -> a"):
        build_config(["profile=a"])
    with pytest.raises(ConfigError, match=r"'trainer.max_epoch' \(from .*profiles/typo.yaml\)"):
        build_config(["profile=typo"])
    with pytest.raises(ConfigError, match="no profile 'gpu'; profiles: a, b, fast, typo"):
        build_config(["profile=gpu"])
    assert build_config(["profile=fast"]).trainer.max_epochs == 2  # the experiment's own block, no shared file


@dataclass
class ShippedConfig:
    name: str = "shipped"
    protocol: str = choice("corrected", "faithful")
    variant: str = choice("plain", "fancy")


def test_a_method_ships_its_experiment_file(tmp_path, monkeypatch):
    """``MethodSpec.experiment``: a plugin's experiment YAML (profiles included) when experiments/ has none."""
    package = tmp_path / "shipped_method"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "experiment.yaml").write_text("method: {variant: fancy}\nprofiles:\n  cpu: {trainer: {max_epochs: 3}}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = MethodSpec(key="shipped", summary="a plugin", config=ShippedConfig, module="shipped_method:Module",
                      experiment="shipped_method:experiment.yaml")
    monkeypatch.setattr(methods, "registry", lambda: {**registry(), "shipped": spec})
    cfg = build_config(["method=shipped", "profile=cpu"])
    assert (cfg.method.variant, cfg.trainer.max_epochs, cfg.trainer.accelerator) == ("fancy", 3, "cpu")
    with pytest.raises(ConfigError, match="'method.variant' = 'fancyy'.*did you mean 'fancy'"):
        build_config(["method=shipped", "method.variant=fancyy"])
