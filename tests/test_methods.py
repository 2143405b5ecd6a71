"""The tests every registered method gets, built from its spec alone (``fer_bench.methods``): a new method (built-in
or plugin) is covered once it is registered, with no list to edit. Each config is ``profile=cpu`` + the shared
:data:`TINY` data set + the spec's own ``tiny`` overrides; what a test needs of a method it asks the spec
(``spec.loop``, ``spec.can(...)``), never the method's name.

- config: the tiny config validates, the spec's check accepts it, a typo'd ``method.*`` key is named.
- export: the untrained model exports to ONNX and onnxruntime matches PyTorch (fast).
- smoke: one tiny ``bench`` per method; its leaderboard metrics recomputed from the predictions file are exact, and
  no eval loop logs a per-step synced value (a collective per batch hangs under DDP with unequal shards).
- resume: a fit run interrupted after its first epoch and resumed ends bit for bit as an uninterrupted run.
- ddp: one 2-process launch per method (``ddp_fork``: the ranks inherit the imported modules, a third of the cost of
  ``ddp_spawn``, which tests/test_ddp.py, test_continual.py and test_metrics.py launch): one run directory, files,
  leaderboard, the image check done once, and the 2-process test on an odd test set equal to a 1-process re-test,
  prediction for prediction.
"""

from __future__ import annotations

import inspect
import json
import os
import re

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score
from test_ddp import DDP, EVAL_BATCH, TINY, assert_same_report, check_odd_uneven_shards, deadline, retest

from fer_bench import cli, faults
from fer_bench.config import ConfigError, build_config, project_root
from fer_bench.data.checked import table_path
from fer_bench.data.datamodule import FERDataModule
from fer_bench.data.readers import dataset_root
from fer_bench.deploy.export import export_onnx
from fer_bench.deploy.inference import RunModel
from fer_bench.engine import runner
from fer_bench.methods import method_keys, spec_of
from fer_bench.methods import predictions as P
from fer_bench.protocols import benchmark
from fer_bench.results import leaderboard

METHODS = method_keys()
# Resume and DDP as written here are the fit loop's (epoch checkpoints); a scenario method resumes from its scenario
# checkpoint and is tested so in its own file (continual: tests/test_continual.py, mid-scenario resume and DDP).
FIT = [k for k in METHODS if spec_of(k).loop == "fit"]
DDP_FORK = [*DDP, "trainer.strategy=ddp_fork"]  # the ddp_sim preset (2 CPU ranks, gloo), forked
CLASSIFICATION = {"acc": accuracy_score, "uar": balanced_accuracy_score,
                  "f1": lambda t, p: f1_score(t, p, average="macro")}


def tiny_config(key: str, tmp_path, *extra: str):
    """``method=key`` on the shared tiny data set with the spec's tiny overrides, writing under ``tmp_path``."""
    return build_config([f"method={key}", *TINY, *spec_of(key).tiny, *extra,
                         f"runs_dir={tmp_path / 'runs'}", f"results_dir={tmp_path / 'results'}"])


# ------------------------------------------------------------------------------------------ config


@pytest.mark.parametrize("key", METHODS)
def test_config_validates_and_names_a_bad_method_key(key, tmp_path):
    spec = spec_of(key)
    cfg = tiny_config(key, tmp_path)
    assert cfg.method.name == key and isinstance(spec.summary, str) and spec.summary
    spec.check_config(cfg)
    experiment = spec.experiment_file() or project_root() / "experiments" / f"{key}.yaml"
    assert experiment.is_file(), f"method {key}: no experiment YAML"
    for applied in spec.tiny:  # every tiny override reached the config
        dotted = applied.partition("=")[0]
        assert OmegaConf.select(cfg, dotted) == OmegaConf.select(OmegaConf.from_dotlist([applied]), dotted), applied
    with pytest.raises(ConfigError, match="method.no_such_key"):
        tiny_config(key, tmp_path, "method.no_such_key=1")


# ------------------------------------------------------------------------------------------ export


@pytest.mark.parametrize("key", [k if spec_of(k).can("export") else pytest.param(
    k, marks=pytest.mark.skip(reason="the spec has no 'export' capability")) for k in METHODS])
def test_onnx_export_matches_pytorch(key, tmp_path):
    cfg = tiny_config(key, tmp_path)
    torch.manual_seed(0)
    method = runner.build_method(cfg).eval()
    needs = method.data_needs()
    model = RunModel(tmp_path, cfg, method, needs)
    images = torch.randn(3, 3, needs.image_size, needs.image_size)
    report = export_onnx(model, tmp_path / "export", images, atol=1e-4)
    meta = json.loads((tmp_path / "export" / "model.json").read_text())
    assert meta["outputs"][0] == "logits" and meta["input"]["size"] == needs.image_size
    import onnx

    props = {p.key: json.loads(p.value) for p in onnx.load(report["path"]).metadata_props}
    assert props["input"] == meta["input"] and props["class_names"] == method.class_names
    assert (props["input"]["mean"], props["input"]["std"]) == (list(needs.mean), list(needs.std))
    assert max(report["max_abs_diff"].values()) <= 1e-4
    import onnxruntime as ort

    session = ort.InferenceSession(report["path"], providers=["CPUExecutionProvider"])
    five = torch.randn(5, 3, needs.image_size, needs.image_size)
    logits = session.run(["logits"], {"images": five.numpy()})[0]  # the batch axis is dynamic
    assert logits.shape == (5, method.num_classes)
    assert np.abs(logits - method(five).detach().numpy()).max() <= 1e-4


# ------------------------------------------------------------------------------------------ smoke


def _np_ccc(x: np.ndarray, y: np.ndarray) -> float:
    return 2 * np.cov(x, y, bias=True)[0, 1] / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


def _spy_on_eval_logging(monkeypatch) -> list[tuple[str, str, bool, bool]]:
    """Record (loop, name, on_step, sync_dist) of every ``self.log`` in a validation, sanity or test loop."""
    signature = inspect.signature(pl.LightningModule.log)
    original = pl.LightningModule.log
    seen: list[tuple[str, str, bool, bool]] = []

    def spy(self, *args, **kwargs):
        trainer = self._trainer
        if trainer is not None and (trainer.validating or trainer.testing or trainer.sanity_checking):
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            a = bound.arguments
            loop = "test" if trainer.testing else "val"
            seen.append((loop, a["name"], a["on_step"] is True, bool(a["sync_dist"])))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pl.LightningModule, "log", spy)
    return seen


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.parametrize("key", METHODS)
def test_tiny_bench_predictions_reproduce_the_leaderboard(key, tmp_path, monkeypatch):
    """Fit methods run the faithful protocol, so the test-selected checkpoint (best_test_epoch) is covered too."""
    spec = spec_of(key)
    protocol = ["method.protocol=faithful"] if spec.loop == "fit" else []
    cfg = tiny_config(key, tmp_path, "trainer.max_epochs=1", "trainer.limit_train_batches=2", "seeds=[0]", *protocol)
    logged = _spy_on_eval_logging(monkeypatch)
    [run_dir] = benchmark.bench(cfg)
    board = leaderboard.read(tmp_path / "results")

    # A per-step ``self.log(..., sync_dist=True)`` in val/test is a collective per batch, which hangs or mixes up
    # values when ranks run different numbers of eval batches.
    names = {loop: {name for kind, name, _, _ in logged if kind == loop} for loop in ("val", "test")}
    if spec.loop == "fit":  # the spy saw both eval loops (val/acc itself: the DDP test's metrics.csv)
        assert names["val"] and {"test/acc", "test/loss"} <= names["test"], names
    per_step_synced = sorted({name for _, name, on_step, sync in logged if on_step and sync})
    assert per_step_synced == [], f"per-step synced logging in an eval loop: {per_step_synced}"

    split = (run_dir / "splits" / "test.txt").read_text().splitlines()
    expected_ckpts = {"best_test_epoch", "last"} if spec.loop == "fit" else {"final"}
    assert set(board["ckpt"]) == expected_ckpts
    for _, row in board.iterrows():
        frame, meta = P.read_predictions(run_dir / P.file_name(row["ckpt"]))
        # one row per test image, in the split file's order, ids relative to the split lists' common folder
        assert frame["id"].tolist() == [os.path.relpath(p, meta["root"]) for p in split]
        assert meta["root"] == os.path.commonpath(
            [p for s in ("train", "val", "test") for p in (run_dir / "splits" / f"{s}.txt").read_text().split()])
        classes = len(meta["class_names"])
        probs = frame[[f"prob_{k}" for k in range(classes)]].to_numpy()
        assert probs.dtype == np.float32 and np.allclose(probs.sum(1), 1, atol=1e-5)
        assert {"subject", "domain", "target", "pred"} <= set(frame) and frame["subject"].notna().all()
        assert "target_au_12" in frame  # the synthetic faces' AU labels
        if "test/au_f1" in row and pd.notna(row["test/au_f1"]):  # a method with an AU head at test time
            assert [c for c in frame if re.fullmatch(r"au_\d+", c)], "the AU head's scores are kept"
        for name, ref in CLASSIFICATION.items():
            recomputed = np.float32(ref(frame["target"], frame["pred"]))
            assert recomputed == np.float32(row[f"test/{name}"]), (row["ckpt"], name)
            assert row[f"test/{name}_lo"] <= row[f"test/{name}_hi"]
        assert row["test/acc_lo"] <= row["test/acc"] <= row["test/acc_hi"]
        assert row["ci_method"].startswith("BCa") and row["ci_unit"] == "image"
        with_va = {"valence", "target_valence"} <= set(frame)  # a method with valence/arousal outputs
        assert with_va == spec.can("valence_arousal"), (row["ckpt"], with_va)
        assert with_va == ("test/ccc_v" in row and pd.notna(row["test/ccc_v"])), (row["ckpt"], with_va)
        if with_va:
            for short, dim in (("v", "valence"), ("a", "arousal")):
                known = frame[f"target_{dim}"].notna()
                got = _np_ccc(frame.loc[known, dim].to_numpy(np.float64),
                              frame.loc[known, f"target_{dim}"].to_numpy(np.float64))
                # the metric sums float64 states in one pass: equal to the two-pass value up to rounding
                assert got == pytest.approx(row[f"test/ccc_{short}"], rel=1e-5, abs=1e-6)
                assert row[f"test/ccc_{short}_lo"] <= row[f"test/ccc_{short}_hi"]
    if spec.loop == "fit":  # a re-test of a checkpoint (``fer-bench test``) exists for the fit loop's runs
        _retest_rewrites_the_file_and_bootstrap_zero_drops_the_intervals(run_dir)


def _retest_rewrites_the_file_and_bootstrap_zero_drops_the_intervals(run_dir):
    path = run_dir / P.file_name("best_test_epoch")  # faithful: best.ckpt is the test-selected epoch
    kept = P.read_predictions(path)[0]
    path.unlink()
    config = run_dir / "config.yaml"
    saved = OmegaConf.load(config)
    saved.eval.bootstrap = 0
    config.write_text(OmegaConf.to_yaml(saved))
    metrics = runner.test_run(run_dir, "best")
    again = P.read_predictions(path)[0]
    pd.testing.assert_frame_equal(again, kept)
    assert not [k for k in metrics if k.endswith(("_lo", "_hi")) or k.startswith("ci_")], metrics
    assert np.float32(accuracy_score(again["target"], again["pred"])) == np.float32(metrics["test/acc"])


# ------------------------------------------------------------------------------------------ resume


class _Interrupted(Exception):
    """Stands in for the SIGKILL of ``FER_BENCH_FAULT`` (tests/test_resume.py kills real processes)."""


def _interrupt_at(monkeypatch, point: str, nth: int) -> None:
    reached = []

    def fault_point(name: str) -> None:
        reached.append(name)
        if reached.count(point) == nth and name == point:
            raise _Interrupted(f"{point}:{nth}")

    monkeypatch.setenv(faults.ENV, f"{point}:{nth}")
    monkeypatch.setattr(faults, "fault_point", fault_point)


@pytest.mark.slow
@pytest.mark.parametrize("key", FIT)
def test_run_interrupted_after_an_epoch_resumes_to_the_uninterrupted_result(key, tmp_path, monkeypatch, capsys):
    epochs = ["trainer.max_epochs=2", "trainer.limit_train_batches=2", "eval.bootstrap=0"]
    whole = runner.train_one(tiny_config(key, tmp_path / "whole", *epochs))

    _interrupt_at(monkeypatch, "epoch_start", 2)  # the first epoch's checkpoints are on disk
    with pytest.raises(_Interrupted):
        runner.train_one(tiny_config(key, tmp_path / "killed", *epochs))
    monkeypatch.delenv(faults.ENV)
    (killed,) = (tmp_path / "killed" / "runs").iterdir()
    assert not (killed / "metrics.json").exists()
    assert cli.main(["bench", f"resume={killed}"]) == 0, capsys.readouterr().err[-3000:]
    assert f"resuming {killed} from {killed / 'checkpoints' / 'last.ckpt'} (epoch 0)" in capsys.readouterr().out

    for kind in runner.CKPT_KINDS:
        reports = [json.loads((r / f"test_{kind}.json").read_text()) for r in (whole, killed)]
        assert reports[0]["confusion_matrix"] == reports[1]["confusion_matrix"], kind
        assert reports[0]["metrics"] == reports[1]["metrics"], kind
        states = [torch.load(r / "checkpoints" / f"{kind}.ckpt", map_location="cpu", weights_only=True)
                  for r in (whole, killed)]
        assert states[0]["epoch"] == states[1]["epoch"], kind
        for name, tensor in states[0]["state_dict"].items():  # the same weights, bit for bit
            assert torch.equal(tensor, states[1]["state_dict"][name]), (kind, name)
    logs = [pd.read_csv(r / "logs" / "metrics.csv") for r in (whole, killed)]
    assert logs[0]["val/acc"].notna().sum() == 2
    pd.testing.assert_frame_equal(logs[0], logs[1])
    assert (killed / "resumes.yaml").read_text().count("- at:") == 1


# ------------------------------------------------------------------------------------------ DDP


@pytest.mark.slow
@pytest.mark.parametrize("key", FIT)
def test_ddp_run_matches_one_process_on_an_odd_test_set(key, tmp_path, monkeypatch):
    """The test split is odd (3 test subjects x 7 classes), so rank 0 runs 3 test batches of ``EVAL_BATCH`` and
    rank 1 only 2: a padding sampler would count an image twice, a per-step collective would hang."""
    monkeypatch.setenv("FER_BENCH_CACHE", str(tmp_path / "cache"))  # its own image-check log, counted below
    cfg = tiny_config(key, tmp_path, *DDP_FORK, "trainer.max_epochs=2")
    with deadline():
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
    assert metrics["method"] == key and metrics["run_id"] == run_dir.name
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
    assert set(board["run_id"]) == {run_dir.name} and set(board["method"]) == {key}
    assert board["epochs"].tolist() == [2, 2]
    assert board["test/acc"].tolist() == pytest.approx([metrics[k]["test/acc"] for k in runner.CKPT_KINDS])

    # The 2-process test of the best checkpoint equals a 1-process re-test of it, prediction for prediction:
    # every test image exactly once, in the split file's order.
    n_test = len((run_dir / "splits" / "test.txt").read_text().splitlines())
    check_odd_uneven_shards(n_test)
    two = json.loads((run_dir / "test_best.json").read_text())
    two_predictions, meta = P.read_predictions(run_dir / P.file_name("best"))
    split = (run_dir / "splits" / "test.txt").read_text().splitlines()
    assert two_predictions["id"].tolist() == [os.path.relpath(p, meta["root"]) for p in split]
    assert_same_report(two, retest(run_dir, 1, "auto"), n_test)
    one_predictions, _ = P.read_predictions(run_dir / P.file_name("best"))  # the re-test rewrote the file
    pd.testing.assert_frame_equal(two_predictions[["id", "target", "pred"]], one_predictions[["id", "target", "pred"]])
    assert EVAL_BATCH == cfg.data.eval_batch_size
