"""DDP on 2 CPU processes (``ddp_spawn``, gloo): exact test metrics, end-to-end training.

State lost after ``ddp_spawn`` is expected, so these tests assert on the files a run writes.
The synthetic test split is odd-sized (21 images: 3 subjects x 7 classes x 1), so a padding sampler would
repeat an image, and with ``data.eval_batch_size=5`` rank 0 runs 3 test batches and rank 1 only 2: a per-step
collective in an eval loop would pair up wrongly or hang (a watchdog turns a hang into a failure).
"""

from __future__ import annotations

import inspect
import json
import multiprocessing
import os
import threading
from contextlib import contextmanager
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_png
from omegaconf import OmegaConf

from fer_bench.config import build_config, load_run_config
from fer_bench.data.checked import table_path
from fer_bench.data.datamodule import FERDataModule
from fer_bench.data.readers import dataset_root
from fer_bench.data.samplers import EvalShardSampler
from fer_bench.engine import runner
from fer_bench.methods import method_keys
from fer_bench.methods import predictions as P

WORLD = 2
EVAL_BATCH = 5
TINY = ["profile=cpu", "data.synth.subjects=15", "data.synth.per_subject=1", "data.synth.size=64",
        "data.synth.difficulty=easy", "data.num_workers=0", "data.batch_size=16",
        f"data.eval_batch_size={EVAL_BATCH}", "trainer.accelerator=cpu", "trainer.progress_bar=false",
        "logger.wandb=false"]
DDP = ["trainer.preset=ddp_sim"]  # 2 CPU processes, ddp_spawn (gloo)
# Per-method tiny overrides on top of the method's own `profile=cpu`; a method appears once it is registered.
# multitask runs on basic7 here (its profile: basic8) so that the test split stays odd: 3 subjects x 7 classes.
METHOD_TINY = {"baseline": ["data.image_size=48"], "qcs": [],
               "multitask": ["data.space=basic7", "data.synth.classes=basic7", "data.image_size=48"],
               "clip_gfer": ["data.image_size=32"]}
DDP_METHODS = [m for m in METHOD_TINY if m in method_keys()]
CONFMAT_METRICS = {"acc", "uar", "f1", "acc7", "expr_f1"}
DEADLINE_S = 420  # per DDP launch sequence; a healthy one takes well under two minutes on 2 CPU cores


def _config(method: str, tmp_path: Path, *extra: str):
    return build_config([f"method={method}", *TINY, *METHOD_TINY[method], *extra,
                         f"runs_dir={tmp_path / 'runs'}", f"results_dir={tmp_path / 'results'}"])


@contextmanager
def _deadline(seconds: float):
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


def _test_split_size(run_dir: Path) -> int:
    return len((run_dir / "splits" / "test.txt").read_text().splitlines())


def _check_odd_uneven_shards(n_test: int) -> None:
    """The 2-rank test shards partition the split, and the ranks run different numbers of eval batches."""
    assert n_test % 2 == 1, f"test split has {n_test} images; the test needs an odd size"
    shards = [list(EvalShardSampler(n_test, rank, WORLD)) for rank in range(WORLD)]
    assert sorted(shards[0] + shards[1]) == list(range(n_test))
    batches = [-(-len(s) // EVAL_BATCH) for s in shards]
    assert batches[0] != batches[1], batches


def _retest(run_dir: Path, devices: int, strategy: str) -> dict:
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
    with _deadline(DEADLINE_S):
        runner.test_run(run_dir, "best")
    return json.loads(report_path.read_text())


def _assert_same_report(multi: dict, single: dict, n_test: int) -> None:
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


@pytest.mark.slow
def test_two_process_test_equals_one_process_on_odd_test_set(tmp_path):
    run_dir = runner.train_one(_config("baseline", tmp_path, "trainer.max_epochs=3"))  # 1 process
    n_test = _test_split_size(run_dir)
    _check_odd_uneven_shards(n_test)
    trained_in_process = json.loads((run_dir / "test_best.json").read_text())

    two = _retest(run_dir, WORLD, "ddp_spawn")
    two_predictions, meta = P.read_predictions(run_dir / P.file_name("best"))  # the re-test rewrote the file
    one = _retest(run_dir, 1, "auto")
    one_predictions, _ = P.read_predictions(run_dir / P.file_name("best"))

    _assert_same_report(two, one, n_test)
    _assert_same_report(two, trained_in_process, n_test)
    # every test image exactly once, in the split file's order; the same predictions as one process
    split = (run_dir / "splits" / "test.txt").read_text().splitlines()
    assert two_predictions["id"].tolist() == [os.path.relpath(p, meta["root"]) for p in split]
    pd.testing.assert_frame_equal(two_predictions[["id", "target", "pred"]], one_predictions[["id", "target", "pred"]])


@pytest.mark.slow
@pytest.mark.parametrize("method", DDP_METHODS)
def test_ddp_spawn_training_runs_end_to_end(method, tmp_path, monkeypatch):
    monkeypatch.setenv("FER_BENCH_CACHE", str(tmp_path / "cache"))  # its own image-check log, counted below
    cfg = _config(method, tmp_path, *DDP, "trainer.max_epochs=2")
    with _deadline(DEADLINE_S):
        run_dir = runner.train_one(cfg)

    # Image headers checked once (rank 0's prepare_data), not once per rank; every rank then read the verdicts.
    root = dataset_root(cfg.data)
    log = table_path(cfg.data.cache_dir, root).with_suffix(".log").read_text().splitlines()
    images = sum(1 for p in root.rglob("*") if p.suffix == ".png")
    assert [line.split()[-2:] for line in log] == [[f"checked={images}", "cached=0"]], log
    # Every rank held the same records and splits (setup compares them across ranks), equal to one process's.
    single = FERDataModule(cfg.data, runner.build_method(cfg).data_needs(), seed=cfg.seed)
    single.setup()
    for split in ("train", "val", "test"):
        listed = (run_dir / "splits" / f"{split}.txt").read_text().splitlines()
        assert listed == single.records.loc[single.records["split"] == split, "path"].tolist(), split

    assert [p.name for p in (tmp_path / "runs").iterdir()] == [run_dir.name], "one run directory, all ranks"
    for name in ("config.yaml", "splits/train.txt", "splits/test.txt", "checkpoints/best.ckpt",
                 "checkpoints/last.ckpt", "test_best.json", "test_last.json", "metrics.json",
                 "logs/metrics.csv"):
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["method"] == method and metrics["run_id"] == run_dir.name
    assert metrics["epochs"] == 2, metrics
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", mmap=True, weights_only=True)
    assert last["epoch"] == 1, "last.ckpt holds the final epoch, even when val/acc stopped improving"
    assert metrics["skipped_items"] == 0, metrics
    # The fit's own log survives the test launches, and the best val score is that log's maximum.
    logs = pd.read_csv(run_dir / "logs" / "metrics.csv")
    assert "val/acc" in logs and logs["val/acc"].notna().sum() == 2, logs.columns.tolist()
    assert metrics["best_val_acc"] == pytest.approx(logs["val/acc"].max(), abs=1e-6), metrics
    for kind in runner.CKPT_KINDS:
        report = json.loads((run_dir / f"test_{kind}.json").read_text())
        assert report["metrics"] == metrics[kind]
        assert 0.0 <= metrics[kind]["test/acc"] <= 1.0
    board = pd.read_csv(tmp_path / "results" / "leaderboard.csv")
    assert board["ckpt"].tolist() == ["best", "last"]
    assert set(board["run_id"]) == {run_dir.name} and set(board["method"]) == {method}
    assert board["epochs"].tolist() == [2, 2]
    assert board["test/acc"].tolist() == pytest.approx([metrics[k]["test/acc"] for k in runner.CKPT_KINDS])

    # The 2-process test of the best checkpoint equals a 1-process test of it.
    n_test = _test_split_size(run_dir)
    _check_odd_uneven_shards(n_test)
    two = json.loads((run_dir / "test_best.json").read_text())
    _assert_same_report(two, _retest(run_dir, 1, "auto"), n_test)


@pytest.mark.slow
@pytest.mark.parametrize("method", DDP_METHODS)
def test_eval_loops_log_no_per_step_synced_values(method, tmp_path, monkeypatch):
    """A per-step ``self.log(..., sync_dist=True)`` in val/test is a collective per batch, which hangs or
    mixes up values when ranks run different numbers of eval batches. Checked in one
    process."""
    signature = inspect.signature(pl.LightningModule.log)
    original = pl.LightningModule.log
    seen: list[tuple[str, bool, bool]] = []

    def spy(self, *args, **kwargs):
        trainer = self._trainer
        if trainer is not None and (trainer.validating or trainer.testing or trainer.sanity_checking):
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            a = bound.arguments
            seen.append((a["name"], a["on_step"] is True, bool(a["sync_dist"])))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pl.LightningModule, "log", spy)
    cfg = _config(method, tmp_path, "trainer.max_epochs=1")
    run_dir = tmp_path / "run"
    method_module = runner.build_method(cfg)
    datamodule = FERDataModule(cfg.data, method_module.data_needs(), run_dir=run_dir, seed=cfg.seed)
    trainer = runner.build_trainer(cfg, run_dir, loggers=[], callbacks=[])
    trainer.validate(method_module, datamodule=datamodule, verbose=False)
    trainer.test(method_module, datamodule=datamodule, verbose=False)

    names = {name for name, _, _ in seen}
    assert {"val/acc", "val/loss", "test/acc", "test/loss"} <= names, names
    per_step_synced = sorted({name for name, on_step, sync in seen if on_step and sync})
    assert per_step_synced == [], f"per-step synced logging in an eval loop: {per_step_synced}"


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
    with _deadline(DEADLINE_S):
        run_dir = runner.train_one(cfg, test=False)  # the 2-process fit: validation gates
    val = pd.read_csv(run_dir / "logs" / "metrics.csv")
    assert val["val/ccc_v"].notna().sum() == 1, "val V/A scored (from rank 0's labels) in the 2-process fit"
    two = _retest(run_dir, WORLD, "ddp_spawn")  # test gates
    assert {"test/ccc_v", "test/ccc_a", "test/va", "test/acc7"} <= set(two["metrics"]), two["metrics"]
    _assert_same_report(two, _retest(run_dir, 1, "auto"), 8)
