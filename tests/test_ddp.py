"""DDP on 2 CPU processes (``ddp_spawn``, gloo): the helpers of the DDP tests and a multitask-specific DDP case.

The per-method DDP test (training end to end, and the 2-process test on an odd test set equal to 1 process) is
tests/test_methods.py::test_ddp_spawn_run_matches_one_process_on_an_odd_test_set, one launch per registered method.
State lost after ``ddp_spawn`` is expected, so these tests assert on the files a run writes.
The synthetic test split is odd-sized (21 images: 3 subjects x 7 classes x 1), so a padding sampler would
repeat an image, and with ``data.eval_batch_size=5`` rank 0 runs 3 test batches and rank 1 only 2: a per-step
collective in an eval loop would pair up wrongly or hang (a watchdog turns a hang into a failure).
"""

from __future__ import annotations

import json
import multiprocessing
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_png
from omegaconf import OmegaConf

from fer_bench.config import build_config, load_run_config
from fer_bench.data.samplers import EvalShardSampler
from fer_bench.engine import runner

WORLD = 2
EVAL_BATCH = 5
# The tiny data set of the generic method tests (tests/test_methods.py) and of the other DDP, resume and sweep tests.
TINY = ["profile=cpu", "data.synth.subjects=15", "data.synth.per_subject=1", "data.synth.size=48",
        "data.synth.difficulty=easy", "data.num_workers=0", "data.batch_size=16",
        f"data.eval_batch_size={EVAL_BATCH}", "trainer.accelerator=cpu", "trainer.progress_bar=false",
        "logger.wandb=false"]
DDP = ["trainer.preset=ddp_sim"]  # 2 CPU processes, ddp_spawn (gloo)
CONFMAT_METRICS = {"acc", "uar", "f1", "acc7", "expr_f1"}
DEADLINE_S = 420  # per DDP launch sequence; a healthy one takes well under two minutes on 2 CPU cores


@contextmanager
def deadline(seconds: float = DEADLINE_S):
    """Kill this process's spawned ranks if they outlive ``seconds`` (a hung collective), so that the test
    fails instead of waiting for gloo's 30-minute timeout."""
    fired = threading.Event()

    def kill_ranks() -> None:
        fired.set()
        for child in multiprocessing.active_children():
            child.kill()

    timer = threading.Timer(seconds, kill_ranks)
    timer.daemon = True
    timer.start()
    try:
        yield
    except Exception as e:
        if fired.is_set():
            raise AssertionError(f"DDP ranks still running after {seconds}s and were killed: a hung "
                                 "collective (per-step sync in an eval loop with unequal per-rank batch "
                                 "counts?)") from e
        raise
    finally:
        timer.cancel()
    assert not fired.is_set(), f"DDP ranks were killed after {seconds}s"


def check_odd_uneven_shards(n_test: int) -> None:
    """The 2-rank test shards partition the split, and the ranks run different numbers of eval batches."""
    assert n_test % 2 == 1, f"test split has {n_test} images; the test needs an odd size"
    shards = [list(EvalShardSampler(n_test, rank, WORLD)) for rank in range(WORLD)]
    assert sorted(shards[0] + shards[1]) == list(range(n_test))
    batches = [-(-len(s) // EVAL_BATCH) for s in shards]
    assert batches[0] != batches[1], batches


def retest(run_dir: Path, devices: int, strategy: str) -> dict:
    """Re-test the run's best checkpoint from its saved config, edited to ``devices`` and ``strategy``;
    returns the report file's content."""
    path = run_dir / "config.yaml"
    saved = OmegaConf.load(path)
    saved.trainer.devices, saved.trainer.strategy, saved.trainer.accelerator = devices, strategy, "cpu"
    path.write_text(OmegaConf.to_yaml(saved))
    trainer = runner.build_trainer(load_run_config(run_dir), run_dir, loggers=[], callbacks=[])
    assert trainer.world_size == devices  # the edited config really asks for `devices` processes
    report_path = run_dir / "retest_best.json"
    report_path.unlink(missing_ok=True)  # so that a report left by an earlier call cannot pass for this one
    with deadline(DEADLINE_S):
        runner.test_run(run_dir, "best")
    return json.loads(report_path.read_text())


def assert_same_report(multi: dict, single: dict, n_test: int) -> None:
    cm, classes = multi["confusion_matrix"], len(multi["class_names"])
    assert sum(map(sum, cm)) == n_test, "every test image counted exactly once"
    assert [sum(row) for row in cm] == [n_test // classes] * classes, "one image per class and test subject"
    assert cm == single["confusion_matrix"]
    # Classification metrics come from the integer matrix: exact. Regression metrics (CCC) sum float outputs,
    # which differ in the last bits when the ranks' batches group the images differently (oneDNN kernels).
    counted = {k: v for k, v in multi["metrics"].items() if k.split("/")[-1] in CONFMAT_METRICS}
    assert counted == {k: single["metrics"][k] for k in counted} and counted
    labels = {k: v for k, v in single["metrics"].items() if isinstance(v, str)}  # ci_method, ci_unit
    assert {k: multi["metrics"][k] for k in labels} == labels
    assert {k: v for k, v in multi["metrics"].items() if k not in labels} == pytest.approx(
        {k: v for k, v in single["metrics"].items() if k not in labels}, rel=1e-4, abs=1e-6, nan_ok=True)
    assert multi["per_class_acc"] == single["per_class_acc"]


def _write_va_tree(root: Path) -> None:
    """A ``csv`` data set (the 8 classes of multitask's basic8, 32 px noise images with a class colour) with
    explicit splits: 4 train images per class with V/A; 1 val and 1 test image per class, V/A blank at odd
    positions of val and test. Rank 1 of 2 takes positions 1, 3, 5, 7 (``EvalShardSampler``): no V/A label."""
    rng = np.random.default_rng(0)
    classes = ["neutral", "anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise"]
    lines = ["path,expression,valence,arousal,split"]
    for split, per_class in (("train", 4), ("val", 1), ("test", 1)):
        position = 0
        for c, name in enumerate(classes):
            for i in range(per_class):
                colour = np.array([(37 * c) % 256, (91 * c) % 256, (53 * c + 80) % 256])
                pixels = np.clip(colour + rng.integers(-40, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
                write_png(root / split / f"{name}_{i}.png", pixels)
                v, a = rng.uniform(-0.9, 0.9, 2)
                blank = split != "train" and position % 2 == 1
                lines.append(f"{split}/{name}_{i}.png,{name},{'' if blank else f'{v:.3f}'},"
                             f"{'' if blank else f'{a:.3f}'},{split}")
                position += 1
    (root / "labels.csv").write_text("\n".join(lines) + "\n")


@pytest.mark.slow
def test_multitask_ddp_with_no_va_labels_on_one_rank_finishes_and_equals_one_process(tmp_path):
    """Every rank must take the same metric collectives at epoch end: a rank-local ``update_count`` gate (rank 1
    has no V/A label) made rank 0 sync the CCC states alone, a hang (the deadline turns it into a failure)."""
    _write_va_tree(tmp_path / "data")
    cfg = build_config(["method=multitask", "profile=cpu", "data=csv", f"data.root={tmp_path / 'data'}",
                        "data.image_size=32", "data.num_workers=0", "data.batch_size=8",
                        f"data.eval_batch_size={EVAL_BATCH}", "trainer.max_epochs=1", "trainer.progress_bar=false",
                        "logger.wandb=false", *DDP, f"runs_dir={tmp_path / 'runs'}",
                        f"results_dir={tmp_path / 'results'}"])
    with deadline(DEADLINE_S):
        run_dir = runner.train_one(cfg, test=False)  # the 2-process fit: validation gates
    val = pd.read_csv(run_dir / "logs" / "metrics.csv")
    assert val["val/ccc_v"].notna().sum() == 1, "val V/A scored (from rank 0's labels) in the 2-process fit"
    two = retest(run_dir, WORLD, "ddp_spawn")  # test gates
    assert {"test/ccc_v", "test/ccc_a", "test/va", "test/acc7"} <= set(two["metrics"]), two["metrics"]
    assert_same_report(two, retest(run_dir, 1, "auto"), 8)
