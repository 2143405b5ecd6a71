"""Resume after a kill: a run killed after its first epoch and resumed with ``fer-bench bench resume=<run dir>``
ends with the same test metrics as an uninterrupted run with the same seed (lessons.md §6).

All three runs are ``fer-bench`` processes with the same environment: the killed one gets SIGKILL as soon as its
first ``last.ckpt`` lands, as a crash or a pre-empted job would. Exact equality needs every source of randomness
restored: weights, optimizer and schedule (Lightning), loop counters and sampler epoch (Lightning +
``set_epoch``), the global generators (``bench.rng.RngState``) and augmentations (seeded per item).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_ddp import TINY

EPOCHS = 3
CONFIG = ["method=baseline", *TINY, "data.image_size=48", f"trainer.max_epochs={EPOCHS}"]


def _bench(out: Path, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "FER_BENCH_SESSION"}
    return subprocess.Popen([sys.executable, "-m", "fer_bench.cli", "bench", *args, f"runs_dir={out / 'runs'}",
                             f"results_dir={out / 'results'}"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen) -> str:
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output[-3000:]
    return output


def _only_run(out: Path) -> Path:
    (run_dir,) = (out / "runs").iterdir()
    return run_dir


def _kill_after_first_checkpoint(proc: subprocess.Popen, out: Path) -> Path:
    deadline = time.time() + 600
    while not list((out / "runs").glob("*/checkpoints/last.ckpt")):
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.time() < deadline, "no checkpoint within 10 minutes"
        time.sleep(0.01)
    proc.kill()
    proc.communicate()
    return _only_run(out)


@pytest.mark.slow
def test_killed_run_resumed_ends_like_an_uninterrupted_run(tmp_path):
    _finish(_bench(tmp_path / "whole", *CONFIG))
    whole = _only_run(tmp_path / "whole")

    killed = _kill_after_first_checkpoint(_bench(tmp_path / "killed", *CONFIG), tmp_path / "killed")
    state = torch.load(killed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["epoch"] < EPOCHS - 1 and not (killed / "metrics.json").exists(), "killed before it finished"
    output = _finish(_bench(tmp_path / "killed", f"resume={killed}"))
    assert f"run {killed}" in output

    resumed = json.loads((killed / "metrics.json").read_text())
    assert resumed["epochs"] == EPOCHS
    for kind in ("best", "last"):
        a, b = (json.loads((run / f"test_{kind}.json").read_text()) for run in (whole, killed))
        assert a["confusion_matrix"] == b["confusion_matrix"], kind
        assert a["metrics"] == b["metrics"], kind
    assert resumed["best_val_acc"] == json.loads((whole / "metrics.json").read_text())["best_val_acc"]
