"""What a resume may change (``fer_bench.engine.resume``): the saved resolved config is kept exactly (presets are not
applied again), topology values may change, recipe values are refused unless allowed, and the checks come before
any write. These tests use a saved config.yaml only; tests/test_resume.py resumes real killed runs."""

from __future__ import annotations

import pytest

from fer_bench.atomic import atomic_save, atomic_write_text, stale_temporaries
from fer_bench.config import build_config, to_yaml
from fer_bench.engine import resume

PRESET_RUN = ["method=baseline", "profile=cpu", "trainer.preset=ddp", "trainer.accelerator=cpu",
              "trainer.precision=32-true", "trainer.devices=1"]


def _run_dir(tmp_path, *overrides: str):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.yaml").write_text(to_yaml(build_config(list(overrides))))
    return run_dir


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_resume_without_values_keeps_the_preset_run_exactly(tmp_path):
    run_dir = _run_dir(tmp_path, *PRESET_RUN)
    plan = resume.prepare(run_dir, [])
    t = plan.cfg.trainer
    assert (t.preset, t.accelerator, t.precision, t.devices, t.strategy) == ("ddp", "cpu", "32-true", 1, "ddp")
    assert plan.changes == {} and plan.ckpt is None
    assert to_yaml(plan.cfg) == (run_dir / "config.yaml").read_text()


def test_topology_values_change_and_are_listed(tmp_path):
    run_dir = _run_dir(tmp_path, *PRESET_RUN)
    plan = resume.prepare(run_dir, ["trainer.devices=4", "trainer.num_nodes=2", "data.num_workers=8",
                                    "logger.wandb=false"])
    assert plan.changes == {"trainer.devices": (1, 4), "trainer.num_nodes": (1, 2), "data.num_workers": (2, 8),
                            "logger.wandb": (True, False)}
    assert plan.cfg.trainer.precision == "32-true"


@pytest.mark.parametrize("value, key", [("trainer.precision=bf16-mixed", "trainer.precision"),
                                        ("optim.lr=0.1", "optim.lr"), ("data.augment.hflip=0.0", "data.augment.hflip"),
                                        ("data.val_fraction=0.3", "data.val_fraction"),
                                        ("data.batch_size=48", "data.batch_size"),
                                        ("trainer.max_epochs=3", "trainer.max_epochs")])
def test_recipe_changes_are_refused_unless_allowed(tmp_path, value, key):
    run_dir = _run_dir(tmp_path, *PRESET_RUN)
    with pytest.raises(resume.ResumeError, match=rf"refuses to change the recipe \({key}: .*allow_recipe_change"):
        resume.prepare(run_dir, [value])
    plan = resume.prepare(run_dir, [value, "resume.allow_recipe_change=true"])
    assert list(plan.changes) == [key]


def test_a_preset_at_resume_is_refused_even_when_allowed(tmp_path):
    run_dir = _run_dir(tmp_path, *PRESET_RUN)
    for extra in ([], ["resume.allow_recipe_change=true"]):
        with pytest.raises(resume.ResumeError, match="trainer.preset=gpu: presets apply only when a run is created"):
            resume.prepare(run_dir, ["trainer.preset=gpu", *extra])
    assert resume.prepare(run_dir, ["trainer.preset=ddp"]).changes == {}  # the run's own preset: no change


def test_resume_options_are_checked(tmp_path):
    run_dir = _run_dir(tmp_path, "profile=cpu")
    with pytest.raises(resume.ResumeError, match="unknown resume option 'resume.ckpts=best'"):
        resume.prepare(run_dir, ["resume.ckpts=best"])
    with pytest.raises(resume.ResumeError, match=r"resume.ckpt=epoch3: no such checkpoint; .* holds: none"):
        resume.prepare(run_dir, ["resume.ckpt=epoch3"])


def test_an_unreadable_checkpoint_names_the_file_and_writes_nothing(tmp_path):
    run_dir = _run_dir(tmp_path, "profile=cpu")
    atomic_save({"state_dict": {}, "epoch": 0, "padding": list(range(1000))}, run_dir / "checkpoints" / "best.ckpt")
    data = (run_dir / "checkpoints" / "best.ckpt").read_bytes()
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(data[: len(data) // 2])
    before = _snapshot(run_dir)
    with pytest.raises(resume.ResumeError) as error:
        resume.prepare(run_dir, ["trainer.devices=2"])
    message = str(error.value)
    assert f"cannot read checkpoint {run_dir / 'checkpoints' / 'last.ckpt'}" in message
    assert "resume.ckpt=best" in message and "best.ckpt, last.ckpt" in message and "start the run anew" in message
    assert _snapshot(run_dir) == before


def test_record_writes_changes_and_history(tmp_path):
    run_dir = _run_dir(tmp_path, *PRESET_RUN)
    (run_dir / "checkpoints" / ".last.ckpt.tmp-abc").write_bytes(b"partial")
    resume.record(resume.prepare(run_dir, []))
    resume.record(resume.prepare(run_dir, ["trainer.devices=2"]))
    import yaml

    history = yaml.safe_load((run_dir / "resumes.yaml").read_text())
    assert [h["changes"] for h in history] == [{}, {"trainer.devices": {"from": 1, "to": 2}}]
    assert history[0]["checkpoint"] is None and history[0]["at"].endswith("Z")
    assert resume.prepare(run_dir, []).cfg.trainer.devices == 2  # config.yaml now holds the change
    assert stale_temporaries(run_dir / "checkpoints") == []


def test_atomic_write_leaves_the_old_file_when_the_write_fails(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "old")

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError, match="cannot pickle"):
        atomic_save({"x": Unpicklable()}, path)
    assert path.read_text() == "old" and stale_temporaries(tmp_path) == []


def test_a_continual_run_resumes_from_its_scenario_checkpoint_only(tmp_path):
    run_dir = _run_dir(tmp_path, "method=continual", "profile=cpu")
    assert resume.prepare(run_dir, []).ckpt is None  # killed before its first step ended: starts again
    with pytest.raises(resume.ResumeError,
                       match=r"a continual run \(a scenario of steps\) resumes from checkpoints/scenario.ckpt"):
        resume.prepare(run_dir, ["resume.ckpt=best"])
    (run_dir / "checkpoints" / "scenario.ckpt").write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(resume.ResumeError, match=r"cannot read checkpoint .*scenario.ckpt: it is damaged"):
        resume.prepare(run_dir, [])
