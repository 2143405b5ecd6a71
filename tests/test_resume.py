"""Kill and resume: a bench run killed with SIGKILL at several points and resumed each time with
``fer-bench bench resume=<run dir>`` ends as an uninterrupted run does, and a resume that cannot go
ahead changes no file.

Every run is a ``fer-bench`` process. The killed one dies by ``FER_BENCH_FAULT`` (``bench/faults.py``): after its
first epoch's checkpoints are written, then in each resumed process in turn mid-epoch, during validation, during
testing and between the leaderboard's CSV and markdown writes; the last resume finishes. The run is made under a
non-default preset with its precision overridden (``trainer.preset=ddp`` on CPU, ``32-true``, one device) and
resumed with no values, so every resume must keep the saved, resolved trainer settings rather than re-apply the
preset (which would ask for a GPU in bf16). Both runs work in their own folder with the same relative
``runs_dir``/``results_dir``, so their ``config.yaml`` files can be compared byte for byte.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import free_port
from test_ddp import TINY

from fer_bench import cli

EPOCHS = 2
PRESET = ["trainer.preset=ddp", "trainer.accelerator=cpu", "trainer.precision=32-true", "trainer.devices=1"]
# Without warm-up and at a high rate the tiny model leaves chance level in 2 epochs (best != last).
CONFIG = ["method=baseline", *TINY, *PRESET, "data.image_size=32", f"trainer.max_epochs={EPOCHS}",
          "sched.warmup_epochs=0", "optim.lr=1e-2", "runs_dir=runs", "results_dir=results"]
# (fault point, the kill's place in the run): one process each, in this order, on the same run directory.
KILLS = [("epoch_start:2", "after the first epoch's checkpoints"), ("train_batch:2", "mid-epoch"),
         ("val_batch", "during validation"), ("test_batch", "during testing"),
         ("leaderboard", "during the leaderboard append")]


def _start(cwd: Path, *args: str, fault: str | None = None) -> subprocess.Popen:
    """A ``fer-bench bench`` process in ``cwd``; one thread (2 cores shared by the suite: no thrashing)."""
    cwd.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("FER_BENCH_SESSION", "FER_BENCH_FAULT")}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(cli.__file__).parents[1]), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    env["MASTER_PORT"] = str(free_port())  # the uninterrupted run's rendezvous runs beside the killed ones'
    if fault:
        env["FER_BENCH_FAULT"] = fault
    return subprocess.Popen([sys.executable, "-m", "fer_bench.cli", "bench", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _bench(cwd: Path, *args: str, fault: str | None = None) -> subprocess.CompletedProcess:
    proc = _start(cwd, *args, fault=fault)
    out, err = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _finished(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-2000:] + err[-3000:]
    return out


def _only_run(cwd: Path) -> Path:
    (run_dir,) = (cwd / "runs").iterdir()
    return run_dir.relative_to(cwd)


def _epoch(ckpt: Path) -> int:
    return torch.load(ckpt, map_location="cpu", mmap=True, weights_only=True)["epoch"]


def _files(folder: Path) -> dict[Path, bytes]:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(uninterrupted folder, killed-and-resumed folder, run directory name relative to each)."""
    root = tmp_path_factory.mktemp("resume")
    whole, killed = root / "whole", root / "killed"
    uninterrupted = _start(whole, *CONFIG)  # alongside the killed runs: one thread each

    first = _bench(killed, *CONFIG, fault=KILLS[0][0])
    assert first.returncode == -signal.SIGKILL, first.stderr[-3000:]
    run = _only_run(killed)
    assert _epoch(killed / run / "checkpoints" / "last.ckpt") == 0
    for fault, where in KILLS[1:]:
        proc = _bench(killed, f"resume={run}", fault=fault)
        assert proc.returncode == -signal.SIGKILL, f"not killed {where}: " + proc.stdout[-2000:] + proc.stderr[-3000:]
        assert f"resuming {run}" in proc.stdout, where
        assert (killed / run / "metrics.json").exists() == (fault == "leaderboard"), where
    board = pd.read_csv(killed / "results" / "leaderboard.csv")
    assert board["ckpt"].tolist() == ["best", "last"], "the killed append wrote the CSV before dying"
    output = _finished(_start(killed, f"resume={run}"))
    assert f"run {run}" in output and "unfinished" not in output
    _finished(uninterrupted)
    return whole, killed, run


@pytest.mark.slow
def test_killed_runs_resumed_end_like_an_uninterrupted_run(runs):
    whole, killed, run = runs
    (whole_run,) = [p.relative_to(whole) for p in (whole / "runs").iterdir()]
    a, b = whole / whole_run, killed / run
    for kind in ("best", "last"):
        reports = [json.loads((r / f"test_{kind}.json").read_text()) for r in (a, b)]
        assert reports[0]["confusion_matrix"] == reports[1]["confusion_matrix"], kind
        assert reports[0]["metrics"] == reports[1]["metrics"], kind
    assert _epoch(b / "checkpoints" / "last.ckpt") == EPOCHS - 1
    for kind in ("best", "last"):  # the same weights, bit for bit
        states = [torch.load(r / "checkpoints" / f"{kind}.ckpt", map_location="cpu", weights_only=True)
                  for r in (a, b)]
        assert states[0]["epoch"] == states[1]["epoch"], kind
        for name, tensor in states[0]["state_dict"].items():
            assert torch.equal(tensor, states[1]["state_dict"][name]), (kind, name)
    assert (a / "config.yaml").read_bytes() == (b / "config.yaml").read_bytes()
    assert _files(a / "splits") == _files(b / "splits") and _files(a / "splits")
    # The learning curve survives the kills: epochs before each checkpoint kept, killed epochs logged once.
    logs = [pd.read_csv(r / "logs" / "metrics.csv") for r in (a, b)]
    assert logs[0]["epoch"].max() == EPOCHS - 1 and logs[0]["val/acc"].notna().sum() == EPOCHS
    pd.testing.assert_frame_equal(logs[0], logs[1])
    saved = (b / "config.yaml").read_text()
    assert "accelerator: cpu" in saved and "precision: 32-true" in saved and "devices: 1\n" in saved

    board = pd.read_csv(killed / "results" / "leaderboard.csv")
    assert board["ckpt"].tolist() == ["best", "last"] and set(board["run_id"]) == {b.name}
    reference = pd.read_csv(whole / "results" / "leaderboard.csv")
    for column in ("test/acc", "test/uar", "test/f1", "epochs", "config_hash", "splits_hash"):
        assert board[column].tolist() == reference[column].tolist(), column
    assert "| best" in (killed / "results" / "leaderboard.md").read_text()

    history = (b / "resumes.yaml").read_text()
    assert history.count("- at:") == len(KILLS) and "changes: {}" in history
    assert not list((b / "checkpoints").glob(".*")), "no temporary checkpoint files left"


def _refused(run_dir: Path, results: Path, args: list[str], capsys) -> str:
    """Resume in this process; it must fail and leave every file of the run and of the results as it was."""
    before = _files(run_dir), _files(results)
    assert cli.main(["bench", f"resume={run_dir}", *args]) == 2
    assert (_files(run_dir), _files(results)) == before, "a refused resume changed a file"
    return capsys.readouterr().err


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """(folder, run directory) of one uninterrupted run of ``CONFIG``, made in this process: the refusal tests need
    a run with checkpoints, not the kill sequence of ``runs`` (one module fixture each keeps xdist workers from
    building the expensive one twice)."""
    folder = tmp_path_factory.mktemp("finished")
    assert cli.main(["bench", *CONFIG, "trainer.strategy=auto",  # no process group left in this process
                     f"runs_dir={folder / 'runs'}", f"results_dir={folder / 'results'}"]) == 0
    return folder, folder / _only_run(folder)


@pytest.mark.slow
def test_resume_from_a_truncated_checkpoint_names_it_and_changes_nothing(finished, tmp_path, capsys):
    folder, run = finished
    damaged = tmp_path / "run"
    shutil.copytree(run, damaged)
    last = damaged / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    for extra in ([], ["trainer.max_epochs=3", "resume.allow_recipe_change=true"]):
        error = _refused(damaged, folder / "results", extra, capsys)
        assert f"cannot read checkpoint {last}: it is damaged" in error, error
        assert "resume.ckpt=best" in error and "start the run anew" in error and "Traceback" not in error


@pytest.mark.slow
def test_resume_with_a_recipe_change_is_refused_and_changes_nothing(finished, capsys):
    folder, run = finished
    error = _refused(run, folder / "results", ["trainer.precision=bf16-mixed"], capsys)
    assert "refuses to change the recipe (trainer.precision: '32-true' -> 'bf16-mixed')" in error, error
    assert "resume.allow_recipe_change=true" in error
