"""FERDataModule: label spaces, carved splits, saved split lists, rank shards without duplicates."""

import numpy as np
import pandas as pd
import pytest
from conftest import write_png

from fer_bench.config import build_config
from fer_bench.data.datamodule import DataNeeds, FERDataModule
from fer_bench.data.records import DataError
from fer_bench.data.samplers import ClassBalancedSampler, EvalShardSampler, ShuffleSampler
from fer_bench.data.splits import assign_splits


def _tree(root, per_class=10, classes=("happy", "sad", "anger")):
    for c in classes:
        for i in range(per_class):
            write_png(root / c / f"{i}.png", np.full((24, 24, 3), 40 * i % 255, np.uint8))


def _dm(root, run_dir=None, *extra):
    cfg = build_config(["data=folder", f"data.root={root}", "data.num_workers=0", "data.batch_size=4", *extra])
    return FERDataModule(cfg.data, DataNeeds(16), run_dir=run_dir, seed=0)


def test_carved_splits_are_stratified_seeded_and_saved(tmp_path):
    _tree(tmp_path / "data")
    dm = _dm(tmp_path / "data", tmp_path / "run")
    dm.setup()
    counts = dm.records.groupby(["split", "head"]).size().unstack()
    assert counts.loc["test"].tolist() == [2, 2, 2] and counts.loc["val"].tolist() == [1, 1, 1]
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 16, 16) and batch["image"].dtype.is_floating_point
    again = _dm(tmp_path / "data", None)
    again.splits_from = tmp_path / "run" / "splits"
    again.setup()
    assert again.records["split"].tolist() == dm.records["split"].tolist()
    assert (tmp_path / "run" / "splits" / "test.txt").read_text().count("\n") == 6


def test_subject_grouped_val_never_shares_a_subject():
    n = 120
    records = pd.DataFrame({"path": [f"{i}.png" for i in range(n)], "subject": [f"s{i % 12}" for i in range(n)],
                            "split": pd.array([pd.NA] * n, dtype="string")})
    label = pd.Series(np.arange(n) % 4)
    split = assign_splits(records, label, 0.2, 0.2, seed=3)
    by_subject = records.assign(split=split).groupby("subject")["split"].nunique()
    assert (by_subject == 1).all()
    assert set(split) == {"train", "val", "test"}
    assert split.tolist() == assign_splits(records, label, 0.2, 0.2, seed=3).tolist()


def test_label_outside_space_is_named(tmp_path):
    _tree(tmp_path, per_class=5, classes=("happy", "contempt"))
    dm = _dm(tmp_path)
    with pytest.raises(DataError, match="outside label space 'basic7'"):
        dm.setup()
    skipping = _dm(tmp_path, tmp_path / "run", "data.on_error=skip")
    skipping.setup()
    assert set(skipping.records["head"]) == {1}
    assert (tmp_path / "run" / "skipped.csv").read_text().count("contempt") == 5


def test_eval_shards_cover_every_item_once():
    shards = [list(EvalShardSampler(11, rank, 2)) for rank in range(2)]
    assert sorted(shards[0] + shards[1]) == list(range(11)) and len(shards[0]) == 6 and len(shards[1]) == 5


def test_train_samplers_are_rank_disjoint_epoch_seeded():
    a, b = ShuffleSampler(10, seed=1, rank=0, world=2), ShuffleSampler(10, seed=1, rank=1, world=2)
    assert sorted(list(a) + list(b)) == list(range(10))
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    labels = np.array([0] * 90 + [1] * 10)
    drawn = np.array(labels[list(ClassBalancedSampler(labels, num_samples=4000, seed=0))])
    assert abs((drawn == 1).mean() - 0.5) < 0.05
