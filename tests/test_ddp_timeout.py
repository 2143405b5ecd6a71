"""DDP waits are bounded by ``trainer.timeout_s`` and a timeout names the missing ranks and the likely cause."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import torch.distributed as dist
from lightning.pytorch.strategies import DDPStrategy
from omegaconf import OmegaConf
from test_ddp import TINY

from fer_bench import cli
from fer_bench.config import build_config
from fer_bench.engine import ddp_wait


def test_ddp_strategies_carry_the_timeout():
    t = build_config(["trainer.preset=ddp_sim", "trainer.timeout_s=7"]).trainer
    for name, start in (("ddp_spawn", "spawn"), ("ddp", "popen"), ("ddp_find_unused_parameters_true", "popen")):
        strategy = ddp_wait.strategy_for(t, name)
        assert isinstance(strategy, DDPStrategy) and strategy._start_method == start
        assert strategy._timeout == timedelta(seconds=7)
        assert strategy._ddp_kwargs.get("find_unused_parameters", False) == name.endswith("_true")
    assert ddp_wait.strategy_for(t, "auto") == "auto"


def test_a_torchrun_timeout_names_the_other_nodes_ranks(monkeypatch):
    """Node 0 of a run configured for 2 nodes x 4 GPUs, started alone by torchrun (GROUP_RANK = node rank)."""
    for key, value in {"RANK": "2", "GROUP_RANK": "0", "LOCAL_WORLD_SIZE": "4", "LOCAL_RANK": "2"}.items():
        monkeypatch.setenv(key, value)
    t = OmegaConf.create({"devices": 4, "num_nodes": 2, "timeout_s": 60})
    error = dist.DistStoreError("Timed out after 61 seconds waiting for clients. 4/8 clients joined.")
    assert ddp_wait.is_timeout(error)
    message = ddp_wait.explain(error, t)
    assert "rank 2 waited trainer.timeout_s=60 s" in message
    assert "expects 8 processes (trainer.devices=4 x trainer.num_nodes=2)" in message
    assert "this machine started ranks 0-3; ranks 4-7 never arrived; 4 of 8 joined" in message
    assert "trainer.num_nodes=1" in message
    assert not ddp_wait.is_timeout(RuntimeError("DataLoader worker timed out after 5 seconds"))
    assert not ddp_wait.is_timeout(ValueError("gloo is fine"))


@pytest.mark.slow
def test_a_missing_node_ends_after_timeout_s_with_the_cause(tmp_path):
    """A run asking for 2 nodes started on one machine (Lightning's own launcher) gives up after 3 s."""
    env = {k: v for k, v in os.environ.items() if k != "FER_BENCH_SESSION"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(cli.__file__).parents[1]), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run([sys.executable, "-m", "fer_bench.cli", "train", "method=baseline", *TINY,
                           "data.image_size=32", "trainer.strategy=ddp", "trainer.num_nodes=2", "trainer.timeout_s=3",
                           f"runs_dir={tmp_path / 'runs'}"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "rank 0 waited trainer.timeout_s=3 s" in proc.stderr, proc.stderr[-3000:]
    assert "this machine started rank 0; rank 1 never arrived" in proc.stderr
    assert "likely cause: trainer.num_nodes / trainer.devices do not match the processes started" in proc.stderr
