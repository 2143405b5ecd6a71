"""Predictions files (methods/predictions.py): every registered method's tested checkpoints leave one row per test
image in the split file's order, and every leaderboard metric of a row recomputed from its file (scikit-learn, numpy)
equals the leaderboard's value; the rows carry bootstrap intervals, which ``eval.bootstrap=0`` turns off."""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from fer_bench.config import ConfigError, build_config
from fer_bench.engine import runner
from fer_bench.methods import method_keys
from fer_bench.methods import predictions as P
from fer_bench.protocols import benchmark
from fer_bench.results import leaderboard

TINY = ["profile=cpu", "data.synth.subjects=15", "data.synth.per_subject=1", "data.synth.size=48",
        "data.synth.difficulty=easy", "data.num_workers=0", "data.batch_size=16", "trainer.progress_bar=false",
        "logger.wandb=false", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "seeds=[0]"]
# On top of each method's `profile=cpu`; a method without an entry runs on its profile alone. Fit methods run the
# faithful protocol, so that the test-selected checkpoint (best_test_epoch) is covered too.
METHOD_TINY = {
    "baseline": ["data.image_size=48", "method.protocol=faithful"],
    "qcs": ["data.synth.size=32", "method.dim=32", "method.image_size=32", "method.heads=2", "data.batch_size=8",
            "method.protocol=faithful"],
    "multitask": ["data.space=basic7", "data.synth.classes=basic7", "data.image_size=48",
                  "method.protocol=faithful"],
    "clip_gfer": ["data.image_size=32", "method.protocol=faithful"],
    "continual": ["data.synth.subjects=9", "data.synth.size=32", "data.image_size=24", "method.step_batch_size=8",
                  "method.step_epochs=1", "method.max_steps=2", "method.fewshot.enabled=false"],
}
CLASSIFICATION = {"acc": accuracy_score, "uar": balanced_accuracy_score,
                  "f1": lambda t, p: f1_score(t, p, average="macro")}


def _np_ccc(x: np.ndarray, y: np.ndarray) -> float:
    return 2 * np.cov(x, y, bias=True)[0, 1] / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


def _bench(method: str, tmp_path, *extra: str):
    cfg = build_config([f"method={method}", *TINY, *METHOD_TINY.get(method, []), *extra,
                        f"runs_dir={tmp_path / 'runs'}", f"results_dir={tmp_path / 'results'}"])
    [run_dir] = benchmark.bench(cfg)
    return run_dir, leaderboard.read(tmp_path / "results")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.parametrize("method", method_keys())
def test_leaderboard_metrics_recomputed_from_the_predictions_file_are_exact(method, tmp_path):
    run_dir, board = _bench(method, tmp_path)
    split = (run_dir / "splits" / "test.txt").read_text().splitlines()
    expected_ckpts = {"final"} if method == "continual" else {"best_test_epoch", "last"}
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
        if "test/au_f1" in row and pd.notna(row["test/au_f1"]):  # the multitask method's AU head at test time
            assert [c for c in frame if re.fullmatch(r"au_\d+", c)], "the AU head's scores are kept"
        for name, ref in CLASSIFICATION.items():
            recomputed = np.float32(ref(frame["target"], frame["pred"]))
            assert recomputed == np.float32(row[f"test/{name}"]), (row["ckpt"], name)
            assert row[f"test/{name}_lo"] <= row[f"test/{name}_hi"]
        assert row["test/acc_lo"] <= row["test/acc"] <= row["test/acc_hi"]
        assert row["ci_method"].startswith("BCa") and row["ci_unit"] == "image"
        with_va = {"valence", "target_valence"} <= set(frame)  # a method with valence/arousal outputs
        assert with_va == ("test/ccc_v" in row and pd.notna(row["test/ccc_v"])), (row["ckpt"], with_va)
        if with_va:
            for short, dim in (("v", "valence"), ("a", "arousal")):
                known = frame[f"target_{dim}"].notna()
                got = _np_ccc(frame.loc[known, dim].to_numpy(np.float64),
                              frame.loc[known, f"target_{dim}"].to_numpy(np.float64))
                # the metric sums float64 states in one pass: equal to the two-pass value up to rounding
                assert got == pytest.approx(row[f"test/ccc_{short}"], rel=1e-5, abs=1e-6)
                assert row[f"test/ccc_{short}_lo"] <= row[f"test/ccc_{short}_hi"]
    if method == "baseline":
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


def test_collector_sorts_by_dataset_index_and_refuses_an_image_scored_twice():
    import torch

    collector = P.PredictionCollector()
    logits = torch.tensor([[0.0, 2.0], [3.0, 1.0], [1.0, 1.5]])
    collector.add(torch.tensor([2, 0]), {"logits": logits[:2], "valence": torch.tensor([0.5, -0.5])})
    collector.add(torch.tensor([1]), {"logits": logits[2:], "valence": torch.tensor([0.1])})
    out = collector.gather()
    assert out["index"].tolist() == [0, 1, 2] and out["pred"].tolist() == [0, 1, 1]
    np.testing.assert_allclose(out["valence"], [-0.5, 0.1, 0.5])
    np.testing.assert_allclose(out["prob"][1], torch.softmax(logits[2], 0).numpy(), rtol=1e-6)
    assert collector.gather() is None, "gathering empties the collector"
    collector.add(torch.tensor([0]), {"logits": logits[:1]})
    collector.add(torch.tensor([0]), {"logits": logits[:1]})
    with pytest.raises(RuntimeError, match="scored twice"):
        collector.gather()


def _frame(subjects: list[str]) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    target = rng.integers(0, 3, len(subjects))
    return pd.DataFrame({"id": [f"{i}.png" for i in range(len(subjects))], "subject": subjects,
                         "target": target, "pred": np.where(rng.random(len(subjects)) < 0.7, target, 0)})


def test_cluster_unit_reads_the_subject_column_and_needs_it_for_every_image():
    cfg = build_config(["data.cluster_by=video"])
    frame = _frame([f"video{i // 10}" for i in range(60)])
    out = P.metric_intervals(frame, 3, cfg.eval, cfg.data.cluster_by)
    assert out["ci_unit"] == "video" and out["ci_resamples"] == 2000 and out["ci_level"] == 0.95
    assert set(out) >= {"test/acc_lo", "test/acc_hi", "test/uar_lo", "test/uar_hi", "test/f1_lo", "test/f1_hi"}
    frame.loc[3, "subject"] = None
    with pytest.raises(ValueError, match="data.cluster_by=video"):
        P.metric_intervals(frame, 3, cfg.eval, cfg.data.cluster_by)


def test_interval_settings_are_checked_at_config_time():
    with pytest.raises(ConfigError, match="data.cluster_by"):
        build_config(["data.cluster_by=frame"])
    with pytest.raises(ConfigError, match="eval.ci_method"):
        build_config(["eval.ci_method=student"])
    with pytest.raises(ConfigError, match="eval.bootstrap"):
        build_config(["eval.bootstrap=-1"])
    assert build_config(["data=ckplus"]).data.cluster_by == "subject"
    assert build_config(["data=affwild2"]).data.cluster_by == "video"


def test_markdown_leaderboard_shows_the_interval_beside_each_test_value(tmp_path):
    row = {"run_id": "r", "suite": "", "name": "baseline", "method": "baseline", "data": "synthetic", "seed": 0,
           "ckpt": "best", "selection": "val",
           "test/acc": 0.912, "test/acc_lo": 0.901, "test/acc_hi": 0.923, "test/uar": 0.5, "ci_method": "BCa"}
    leaderboard.append(tmp_path, [row])
    text = (tmp_path / "leaderboard.md").read_text()
    summary, runs = text.split("## All runs")
    assert "0.9120 [0.9010, 0.9230]" in summary and "0.9120 [0.9010, 0.9230]" in runs
    assert "test/acc_lo" not in text and "0.5000" in text
    leaderboard.append(tmp_path, [row | {"run_id": "r2", "seed": 1, "test/acc": 0.902}])
    summary = (tmp_path / "leaderboard.md").read_text().split("## All runs")[0]
    assert "0.9070 ± 0.0071" in summary, "two seeds: mean ± std over seeds"
