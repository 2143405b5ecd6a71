"""Many nodes: ``experiments/launch/torchrun.sh`` run as 2 nodes x 1 CPU process on 127.0.0.1 (gloo), the way a
cluster job runs it on each node (NNODES, NODE_RANK, MASTER_ADDR and one shared FER_BENCH_SESSION)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import free_port
from test_ddp import CONFMAT_METRICS, TINY

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ["method=baseline", *TINY, "data.image_size=32", "trainer.max_epochs=1", "trainer.accelerator=cpu",
          "trainer.precision=32-true"]



@pytest.mark.slow
def test_two_nodes_by_torchrun_write_one_run_that_one_process_retests_exactly(tmp_path):
    env = {**os.environ, "NNODES": "2", "NPROC": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
           "FER_BENCH_SESSION": "two-nodes", "TORCHRUN": str(Path(sys.executable).parent / "torchrun"),
           "OMP_NUM_THREADS": "1"}
    out = [f"runs_dir={tmp_path / 'runs'}", f"results_dir={tmp_path / 'results'}"]
    nodes = [subprocess.Popen(["bash", "experiments/launch/torchrun.sh", *CONFIG, *out], cwd=ROOT,
                              env={**env, "NODE_RANK": str(rank)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for rank in (0, 1)]
    logs = [node.communicate(timeout=600)[0] for node in nodes]
    for rank, (node, log) in enumerate(zip(nodes, logs, strict=True)):
        assert node.returncode == 0, f"node {rank}:\n{log[-3000:]}"
    # Node 1 runs rank 1 alone: its whole output (stdout and stderr) must not read like a failure, e.g. the
    # 'unfinished' or 'error' lines a rank prints when it leaves before the others.
    assert not re.search(r"unfinished|traceback|error", logs[1], re.IGNORECASE), f"node 1:\n{logs[1][-3000:]}"

    (run_dir,) = (tmp_path / "runs").iterdir()
    board = pd.read_csv(tmp_path / "results" / "leaderboard.csv")
    assert board["ckpt"].tolist() == ["best", "last"] and set(board["run_id"]) == {run_dir.name}
    trained = json.loads((run_dir / "test_best.json").read_text())
    reported = trained["metrics"]
    assert board.loc[board["ckpt"] == "best", "test/acc"].item() == reported["test/acc"]

    retest = subprocess.run([sys.executable, "-m", "fer_bench.cli", "test", f"run={run_dir}"], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert retest.returncode == 0, retest.stderr[-3000:]
    single = json.loads(retest.stdout[retest.stdout.index("{"):])
    # Counts from the confusion matrix are exact; a mean loss sums floats in another order over 1 vs 2 ranks.
    counted = {k: v for k, v in reported.items() if k.partition("/")[2] in CONFMAT_METRICS}
    assert counted and counted == {k: single[k] for k in counted}
    texts = {k for k, v in reported.items() if isinstance(v, str)}  # how the intervals were made
    assert {k: single[k] for k in texts} == {k: reported[k] for k in texts}
    assert {k: v for k, v in single.items() if k not in texts} == pytest.approx(
        {k: v for k, v in reported.items() if k not in texts}, rel=1e-4, abs=1e-6)
    retested = json.loads((run_dir / "retest_best.json").read_text())
    assert retested["confusion_matrix"] == trained["confusion_matrix"]
