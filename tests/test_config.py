import subprocess
import sys

import pytest

from fer_bench.config import ConfigError, build_config


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


def test_cli_rejects_typo_before_importing_the_training_stack():
    out = subprocess.run([sys.executable, "-m", "fer_bench.cli", "train", "optim.lrr=0.1"], capture_output=True,
                         text=True)
    assert out.returncode == 2
    assert "did you mean 'optim.lr'" in out.stderr and "Traceback" not in out.stderr
    probe = "import sys, fer_bench.config; print(sorted(m for m in ('lightning', 'timm', 'torch') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
