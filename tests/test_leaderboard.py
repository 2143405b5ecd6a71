"""Leaderboard appends are atomic: concurrent writers lose nothing; the markdown aggregates over seeds."""

import multiprocessing as mp

import pandas as pd

from fer_bench.results import leaderboard


def _writer(results_dir, worker: int) -> None:
    for i in range(10):
        leaderboard.append(results_dir, [{"run_id": f"w{worker}-{i}", "method": "m", "data": "d", "seed": i,
                                          "ckpt": "best", "selection": "val/acc", "test/acc": 0.5}])


def test_concurrent_appends_keep_every_row(tmp_path):
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(tmp_path, w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    table = pd.read_csv(tmp_path / "leaderboard.csv")
    assert sorted(table["run_id"]) == sorted(f"w{w}-{i}" for w in range(4) for i in range(10))


def test_markdown_shows_mean_and_std_over_seeds(tmp_path):
    rows = [{"run_id": f"r{s}", "method": "qcs", "data": "synthetic", "seed": s, "ckpt": "best",
             "selection": "val/acc", "test/acc": acc} for s, acc in enumerate([0.9, 0.8, 0.7])]
    leaderboard.append(tmp_path, rows)
    md = (tmp_path / "leaderboard.md").read_text()
    assert "0.8000 ± 0.1000" in md and "| qcs" in md


def test_a_run_appending_again_replaces_its_rows_of_that_checkpoint_kind(tmp_path):
    """A resumed run killed after its append appends again: one row per run and checkpoint kind remains."""
    def rows(run, acc):
        return [{"run_id": run, "method": "m", "data": "d", "seed": 0, "ckpt": kind, "selection": "val/acc",
                 "test/acc": acc + i} for i, kind in enumerate(("best", "last"))]

    leaderboard.append(tmp_path, rows("a", 0.1))
    leaderboard.append(tmp_path, rows("b", 0.3))
    leaderboard.append(tmp_path, rows("a", 0.5))
    table = pd.read_csv(tmp_path / "leaderboard.csv")
    assert list(zip(table["run_id"], table["ckpt"], table["test/acc"], strict=True)) == [
        ("b", "best", 0.3), ("b", "last", 1.3), ("a", "best", 0.5), ("a", "last", 1.5)]
