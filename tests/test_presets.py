"""Trainer presets (``trainer.preset=``) and the config of a resumed run."""

import pytest
import yaml

from fer_bench.config import TRAINER_PRESETS, ConfigError, build_config, resume_config, to_yaml
from fer_bench.config.presets import PRESETS_FILE


def test_ddp_sim_is_two_cpu_processes_and_the_command_line_wins():
    t = build_config(["method=qcs", "profile=cpu", "trainer.preset=ddp_sim"]).trainer
    assert (t.accelerator, t.devices, t.strategy) == ("cpu", 2, "ddp_spawn")
    assert build_config(["trainer.preset=ddp", "trainer.devices=4", "trainer.num_nodes=2"]).trainer.devices == 4
    assert set(TRAINER_PRESETS) == {"cpu", "gpu", "ddp", "ddp_sim"}
    assert build_config(["trainer.preset=ddp_sim"]).trainer.timeout_s == 120
    assert build_config(["trainer.preset=ddp"]).trainer.timeout_s == 1800
    with pytest.raises(ConfigError, match="unknown preset; presets: cpu, gpu, ddp, ddp_sim"):
        build_config(["trainer.preset=tpu"])
    with pytest.raises(ConfigError, match="'trainer.preset' = 'ddp_sm'.*did you mean 'ddp_sim'"):
        build_config(["trainer.preset=ddp_sm"])


def test_presets_are_the_yaml_file_and_a_profile_keeps_its_values_under_them():
    assert TRAINER_PRESETS == yaml.safe_load(PRESETS_FILE.read_text())
    t = build_config(["method=qcs", "profile=gpu", "trainer.preset=cpu"]).trainer
    assert (t.accelerator, t.precision, t.timeout_s) == ("cpu", "32-true", 120)  # the preset over the profile
    assert build_config(["method=qcs", "profile=gpu", "trainer.preset=ddp"]).data.num_workers == 8


def test_resume_keeps_the_saved_config_and_applies_values(tmp_path):
    (tmp_path / "config.yaml").write_text(to_yaml(build_config(["method=baseline", "profile=cpu", "seed=2"])))
    cfg = resume_config(tmp_path, ["method=baseline", "trainer.devices=2", "trainer.strategy=ddp_spawn"])
    assert cfg.seed == 2 and list(cfg.seeds) == [2] and cfg.trainer.strategy == "ddp_spawn"
    assert cfg.trainer.devices == 2
    with pytest.raises(ConfigError, match="method=qcs does not match the run being resumed"):
        resume_config(tmp_path, ["method=qcs"])
    with pytest.raises(ConfigError, match="a resumed run keeps its seed"):
        resume_config(tmp_path, ["seeds=[0,1]"])


def test_timeout_must_be_positive():
    with pytest.raises(ConfigError, match="'trainer.timeout_s' = 0: give seconds > 0"):
        build_config(["trainer.timeout_s=0"])
