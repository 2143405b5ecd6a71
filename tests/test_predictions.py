"""Predictions files (methods/predictions.py): the collector, bootstrap intervals and their settings.

Per registered method (every tested checkpoint leaves one row per test image in the split file's order, and every
leaderboard metric recomputed from its file equals the leaderboard's value): tests/test_methods.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fer_bench.config import ConfigError, build_config
from fer_bench.methods import predictions as P
from fer_bench.results import leaderboard

# The leaderboard-from-predictions check of every registered method, a retest rewriting the file and
# ``eval.bootstrap=0`` are in tests/test_methods.py::test_tiny_bench_predictions_reproduce_the_leaderboard.


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
