"""The baseline learns the synthetic task, and a run directory re-tests to the metrics bench wrote."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_png
from test_ddp import TINY as DDP_TINY

from fer_bench.config import build_config
from fer_bench.engine import runner

TINY = [*DDP_TINY, "data.image_size=48"]  # the shared tiny data set (15 subjects, 48 px)


@pytest.mark.slow
def test_baseline_learns_synthetic_faces_and_retests_identically(learned_baseline):
    run_dir, results = learned_baseline  # conftest: one training shared with the predict and export tests
    metrics = json.loads((run_dir / "metrics.json").read_text())
    chance = 1 / 7
    assert metrics["best"]["test/acc"] > chance + 0.4, metrics
    for name in ("config.yaml", "splits/train.txt", "checkpoints/best.ckpt", "checkpoints/last.ckpt",
                 "plots/confusion_best.png", "logs/metrics.csv"):
        assert (run_dir / name).is_file(), name
    board = pd.read_csv(results / "leaderboard.csv")
    assert board["ckpt"].tolist() == ["best", "last"] and board["run_id"].nunique() == 1
    retest = runner.test_run(run_dir, "best")
    assert retest["test/acc"] == pytest.approx(metrics["best"]["test/acc"], abs=1e-6)
    assert retest["test/f1"] == pytest.approx(metrics["best"]["test/f1"], abs=1e-6)


@pytest.mark.slow
def test_cli_bench_on_a_hand_made_class_folder_tree(tmp_path):
    rng = np.random.default_rng(0)
    colours = {"happy": (220, 40, 40), "sad": (40, 40, 220), "surprise": (40, 200, 40)}
    for split, n in (("train", 12), ("test", 5)):
        for cls, colour in colours.items():
            for i in range(n):
                noise = rng.integers(-30, 30, (32, 32, 3))
                write_png(tmp_path / "tree" / split / cls / f"{i}.png",
                          np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8))
    args = ["bench", "method=baseline", "data=folder", f"data.root={tmp_path / 'tree'}", "profile=cpu",
            "data.num_workers=0", "data.image_size=32", "data.batch_size=8", "trainer.max_epochs=3",
            "trainer.progress_bar=false", f"runs_dir={tmp_path / 'runs'}", f"results_dir={tmp_path / 'results'}"]
    cwd = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-m", "fer_bench.cli", *args], capture_output=True, text=True, cwd=cwd)
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = Path(out.stdout.split("run ", 1)[1].split()[0])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["best"]["test/acc"] > 0.8
    retest = subprocess.run([sys.executable, "-m", "fer_bench.cli", "test", f"run={run_dir}", "ckpt=last"],
                            capture_output=True, text=True, cwd=cwd)
    assert retest.returncode == 0, retest.stderr[-3000:]
    assert json.loads(retest.stdout[retest.stdout.index("{"):])["test/acc"] == pytest.approx(
        metrics["last"]["test/acc"], abs=1e-6)


def test_faithful_protocol_scores_test_every_epoch_and_flags_it(tmp_path):
    cfg = build_config([*TINY, "method.protocol=faithful", "trainer.max_epochs=2", "eval.bootstrap=0",
                        f"runs_dir={tmp_path / 'runs'}", f"results_dir={tmp_path / 'results'}"])
    run_dir = runner.train_one(cfg)
    history = pd.read_csv(run_dir / "logs" / "metrics.csv")
    per_epoch = history["test_epoch/acc"].dropna()
    assert len(per_epoch) == 2
    board = pd.read_csv(tmp_path / "results" / "leaderboard.csv")
    flagged = board[board["ckpt"] == "best_test_epoch"]
    assert len(flagged) == 1 and "optimistic" in flagged["selection"].iloc[0]
    assert flagged["test/acc"].iloc[0] == pytest.approx(per_epoch.max())
    assert board["ckpt"].tolist() == ["best_test_epoch", "last"]  # best.ckpt is the test-selected epoch


def test_corrected_protocol_serves_only_val_during_fit():
    cfg = build_config(TINY)
    from fer_bench.data.datamodule import DataNeeds, FERDataModule

    dm = FERDataModule(cfg.data, DataNeeds(48), seed=0)
    dm.setup()
    assert dm.val_dataloader().dataset is dm.datasets["val"]
    dm.needs.test_every_epoch = True
    assert [loader.dataset for loader in dm.val_dataloader()] == [dm.datasets["val"], dm.datasets["test"]]
