"""Per-group results (bench.fairness, group_by) and the record columns they group by: the synthetic faces' skin
tone, RAF-DB's manual attributes, extra columns of a csv data card."""

import os

import numpy as np
import pandas as pd
import pytest
from conftest import write_png

from fer_bench.config import build_config, to_yaml
from fer_bench.data import layouts, synthetic
from fer_bench.data.readers import read_records
from fer_bench.data.records import DataError
from fer_bench.results import fairness, prediction_sets
from fer_bench.results.report import build_report

SYNTH = ["data.synth.subjects=12", "data.synth.per_subject=1", "data.synth.size=32", "data.image_size=32",
         "logger.wandb=false"]


def test_statistical_parity_equals_a_hand_computation():
    # holistic-ai's multiclass_statistical_parity docstring example (as copied in
    # dkollias/Fair-Consistent-Affect-Analysis fair/holisticai.py). Predicted-class rates per group:
    # A (0.5, 0.25, 0.25), B (0.25, 0.5, 0.25), C (0.5, 0, 0.5); half L1 distances AB 0.25, AC 0.25, BC 0.5.
    groups = np.array(["A", "A", "A", "A", "B", "B", "B", "B", "C", "C"])
    pred = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    assert fairness.statistical_parity(groups, pred, "max") == pytest.approx(0.5)
    assert fairness.statistical_parity(groups, pred, "mean") == pytest.approx((0.25 + 0.25 + 0.5) / 3)
    assert fairness.statistical_parity(np.repeat(["x", "y"], 4), np.tile([0, 1], 4)) == 0


def _synthetic_run(tmp_path, seed_offset: int = 0):
    """A run directory on tiny synthetic faces whose test split is every image, with predictions whose ids are
    relative paths and which lack the skin-tone column (the records→predictions join must supply it)."""
    cfg = build_config([*SYNTH, f"runs_dir={tmp_path / 'runs'}", f"results_dir={tmp_path / 'results'}"])
    records, _ = read_records(cfg.data)
    run = tmp_path / "runs" / f"baseline-s{seed_offset}"
    (run / "splits").mkdir(parents=True)
    (run / "config.yaml").write_text(to_yaml(cfg))
    (run / "splits" / "test.txt").write_text("".join(f"{p}\n" for p in records["path"]))
    root = os.path.commonpath(list(records["path"]))
    rng = np.random.default_rng(seed_offset)
    target = records["expression"].to_numpy(dtype=int)
    pred = np.where(rng.random(len(target)) < 0.6, target, rng.integers(0, 7, len(target)))
    pd.DataFrame({"id": [os.path.relpath(p, root) for p in records["path"]], "target": target,
                  "pred": pred}).to_parquet(run / "predictions_best.parquet")
    return run, records, pred


def test_synthetic_faces_expose_a_skin_tone_per_subject():
    cfg = build_config(SYNTH)
    records, _ = read_records(cfg.data)
    per_subject = records.groupby("subject")["skin_tone"].nunique()
    assert (per_subject == 1).all() and set(records["skin_tone"]) <= {"light", "medium", "dark"}
    for sid, tone in records.groupby("subject")["skin_tone"].first().items():
        skin = np.array(synthetic.make_subject(cfg.data.synth.seed, int(sid)).skin)
        near = [name for entry, name in zip(synthetic.SKIN_TONES, synthetic.SKIN_TONE_NAMES, strict=True)
                if np.all(np.abs(skin - np.array(entry)) <= 10)]
        assert tone in near


def test_group_by_skin_tone_matches_a_direct_pandas_computation(tmp_path):
    run, records, pred = _synthetic_run(tmp_path)
    side = prediction_sets.attach_columns(prediction_sets.side("baseline", [run], "best", [0]), ["skin_tone"])
    table, summary = fairness.group_results(side, "skin_tone", resamples=500)
    direct = records.assign(correct=pred == records["expression"].to_numpy(dtype=int)).groupby(
        "skin_tone")["correct"].agg(["mean", "size"])
    assert len(direct) >= 2
    got = table.set_index("skin_tone")
    assert got["acc"].to_numpy() == pytest.approx(direct["mean"].reindex(got.index).to_numpy())
    assert got["n"].tolist() == direct["size"].reindex(got.index).tolist()
    assert ((got["acc_lo"] <= got["acc"]) & (got["acc"] <= got["acc_hi"])).all()
    assert summary["acc_gap"] == pytest.approx(direct["mean"].max() - direct["mean"].min())
    assert summary["acc_ratio"] == pytest.approx(direct["mean"].min() / direct["mean"].max())
    assert summary["stat_parity_mean"] == pytest.approx(
        fairness.statistical_parity(records["skin_tone"].to_numpy(), pred))
    # The report's group_by section goes the same way, from the leaderboard.
    results = tmp_path / "results"
    results.mkdir()
    pd.DataFrame([{"run_id": run.name, "suite": "", "name": "baseline", "method": "baseline", "data": "synthetic",
                   "seed": 0, "ckpt": "best", "selection": "val/acc", "test/acc": float(np.mean(got["acc"])),
                   "run_dir": str(run)}]).to_csv(
        results / "leaderboard.csv", index=False)
    report = build_report(results, tmp_path / "runs", results / "report.md", group_by="skin_tone")
    assert "## Per-group results by `skin_tone`" in report.markdown
    assert report.tables["group_by/baseline on synthetic"]["acc"].tolist() == pytest.approx(got["acc"].tolist())


def test_prediction_ids_that_match_no_record_are_named(tmp_path):
    run, _, _ = _synthetic_run(tmp_path)
    frame = pd.read_parquet(run / "predictions_best.parquet")
    frame.loc[0, "id"] = "images/test/missing.png"
    frame.to_parquet(run / "predictions_best.parquet")
    with pytest.raises(ValueError, match="prediction id images/test/missing.png is not in the data set's records"):
        prediction_sets.attach_columns(prediction_sets.side("baseline", [run], "best"), ["skin_tone"])


def _manual(root, name: str, gender: str, race: str, age: str) -> None:
    """``basic/Annotation/manual/<stem>_manu_attri.txt`` as RAF-DB ships it: five landmark lines (x, y tab-
    separated), then gender, race and age group (RAF-DB README, 'Subfile 2: manual.zip')."""
    folder = root / "basic" / "Annotation" / "manual"
    folder.mkdir(parents=True, exist_ok=True)
    landmarks = "".join(f"{30.5 + 5 * k:.2f}\t{40.25 + 3 * k:.2f}\n" for k in range(5))
    (folder / f"{name.split('.')[0]}_manu_attri.txt").write_text(f"{landmarks}{gender}\n{race}\n{age}\n")


def test_rafdb_reader_exposes_the_manual_gender_race_and_age_group(tmp_path):
    names = layouts.write_rafdb(tmp_path, [("train", 4), ("train", 1), ("test", 5)])
    for name, codes in zip(names, [("0", "0", "2"), ("1", "2", "4"), ("2", "1", "0")], strict=True):
        _manual(tmp_path, name, *codes)
    records, _ = read_records(build_config(["data=rafdb", f"data.root={tmp_path}"]).data)
    assert records["gender"].tolist() == ["male", "female", "unsure"]
    assert records["race"].tolist() == ["Caucasian", "Asian", "African-American"]
    assert records["age_group"].tolist() == ["20-39", "70+", "0-3"]
    _manual(tmp_path, names[1], "1", "7", "4")
    with pytest.raises(DataError, match=r"train_00002_manu_attri.txt:7: race '7' is not one of \[0, 1, 2\]"):
        read_records(build_config(["data=rafdb", f"data.root={tmp_path}"]).data)


def test_csv_card_keeps_the_group_columns_named(tmp_path):
    # The FG 2024 fair affect-analysis protocol's EXPR annotation header (dkollias/Fair-Consistent-Affect-Analysis
    # README, AffectNet EXPR): name, expression, age, gender, race.
    rows = [("train_set/0.jpg", "Happiness", "20-29", "Female", "Asian"),
            ("train_set/1.jpg", "Anger", "70+", "Male", "White"),
            ("val_set/2.jpg", "Neutral", "03-09", "Male", "Black")]
    for name, *_ in rows:
        write_png(tmp_path / "images" / name, np.full((8, 8, 3), 100, np.uint8))
    pd.DataFrame(rows, columns=["name", "expression", "age", "gender", "race"]).to_csv(
        tmp_path / "images" / "test.csv", index=False)
    base = ["data=csv", f"data.root={tmp_path / 'images'}", "data.csv.file=test.csv", "data.csv.path_column=name"]
    records, _ = read_records(build_config([*base, "data.group_columns=[age,gender,race]"]).data)
    assert records[["age", "gender", "race"]].values.tolist() == [list(r[2:]) for r in rows]
    assert records["expression"].tolist() == [1, 6, 0]
    plain, _ = read_records(build_config(base).data)
    assert "age" not in plain
    with pytest.raises(DataError, match="test.csv: no column 'ethnicity'"):
        read_records(build_config([*base, "data.group_columns=[ethnicity]"]).data)
