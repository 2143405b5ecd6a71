"""Class-folder trees with subjects (``data.subject_regex``) and subject-independent k-fold benchmarks.

Fixture layouts:
- CK+ as exported into class folders (the "CK+48" copies: folders anger, contempt, disgust, fear, happy, sadness,
  surprise; grayscale PNG frames keeping the release's names ``S<subject>_<sequence>_<frame>.png``, e.g.
  ``S005_001_00000011.png``; Lucey et al. 2010, CK+ release ``cohn-kanade-images/S005/001/``).
- JAFFE (Lyons et al. 1998; zenodo.org/record/3451524): 256x256 grayscale TIFFs named
  ``<poser initials>.<expression code><take>.<image number>.tiff``, e.g. ``KA.AN1.39.tiff``, sorted by the user
  into class folders.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from fer_bench.config import ConfigError, build_config, resume_config, to_yaml
from fer_bench.data.readers import read_records
from fer_bench.data.records import DataError
from fer_bench.data.splits import assign_splits
from fer_bench.labels import expression_id
from fer_bench.results.leaderboard import mean_std

CKPLUS_REGEX = r"^(S\d+)_"
JAFFE_REGEX = r"^([A-Z]{2})\."
CKPLUS_SUBJECTS = ["S005", "S010", "S011", "S014", "S022", "S026", "S032", "S034", "S037", "S042", "S044", "S046"]
# CK+48 class folders; a class-dependent grey pattern (dark / bright / striped) with noise, so 1 epoch learns a bit
CKPLUS_CLASSES = {"anger": 50, "happy": 200, "surprise": None}


def _gray(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), pixels)


def _ckplus_tree(root: Path, subjects: list[str], frames: int = 1, size: int = 48) -> list[str]:
    """``root/<class>/S<subject>_<sequence>_<frame>.png`` grayscale frames; returns the relative paths."""
    rng = np.random.default_rng(0)
    written = []
    for s, subject in enumerate(subjects):
        for c, (cls, level) in enumerate(CKPLUS_CLASSES.items()):
            sequence = f"{c + 1:03d}"
            for f in range(frames):
                if level is None:
                    base = np.tile(np.where(np.arange(size) % 8 < 4, 40, 215), (size, 1))
                else:
                    base = np.full((size, size), level)
                noise = rng.integers(-25, 25, (size, size))
                name = f"{cls}/{subject}_{sequence}_{9 + s + f:08d}.png"
                _gray(root / name, np.clip(base + noise, 0, 255).astype(np.uint8))
                written.append(name)
    return written


def _read(root: Path, *extra: str):
    return read_records(build_config(["data=folder", f"data.root={root}", *extra]).data)


def _subject(path: str, regex: str = CKPLUS_REGEX) -> str:
    return re.search(regex, Path(path).name).group(1)


def test_ckplus_names_give_subjects_and_folds_hold_out_whole_subjects(tmp_path):
    subjects = CKPLUS_SUBJECTS[:6]
    _ckplus_tree(tmp_path, subjects, size=16)
    records, problems = _read(tmp_path, f"data.subject_regex={CKPLUS_REGEX}", "data.folds=3", "data.fold=1")
    assert not problems.items
    assert [_subject(p) for p in records["path"]] == records["subject"].tolist()
    assert sorted(records["subject"].unique()) == subjects
    assert records.groupby("subject").size().tolist() == [3] * 6  # one frame per class folder
    # sorted subjects, fold length 6 // 3 = 2: fold 1 holds out the 3rd and 4th
    assert sorted(records.loc[records["split"] == "test", "subject"].unique()) == ["S011", "S014"]
    happy = records[records["path"].str.contains("/happy/")]
    assert set(happy["expression"]) == {expression_id("happy")}
    split = assign_splits(records, records["expression"], 0.3, 0.2, seed=0)  # val carved from train subjects
    owners = records.groupby("subject").apply(lambda g: set(split[g.index]), include_groups=False)
    assert all(len(s) == 1 for s in owners), owners.to_dict()
    assert set(split) == {"train", "val", "test"}


def test_jaffe_tiff_names_give_subjects_and_carved_splits_keep_them_whole(tmp_path):
    posers = ["KA", "KL", "KM", "KR", "MK", "NA", "NM", "TM", "UY", "YM"]
    codes = {"AN": "angry", "HA": "happy", "SU": "surprise"}
    rng = np.random.default_rng(1)
    number = 0
    for poser in posers:
        for code, folder in codes.items():
            for take in (1, 2):
                number += 1
                _gray(tmp_path / folder / f"{poser}.{code}{take}.{number}.tiff",
                      rng.integers(0, 255, (32, 32)).astype(np.uint8))
    records, problems = _read(tmp_path, f"data.subject_regex={JAFFE_REGEX}")
    assert not problems.items and len(records) == 60
    assert records.loc[records["path"].str.endswith("KA.AN1.1.tiff"), "subject"].tolist() == ["KA"]
    assert sorted(records["subject"].unique()) == posers
    assert records["split"].isna().all()  # no folds asked: carved later, by subject
    split = assign_splits(records, records["expression"], 0.15, 0.2, seed=3)
    owners = records.groupby("subject").apply(lambda g: set(split[g.index]), include_groups=False)
    assert all(len(s) == 1 for s in owners) and set(split) == {"train", "val", "test"}


def test_a_file_without_a_subject_in_its_name_is_named_or_skipped(tmp_path):
    _ckplus_tree(tmp_path, CKPLUS_SUBJECTS[:4], size=16)
    stray = tmp_path / "happy" / "IMG_0001.png"
    _gray(stray, np.zeros((16, 16), np.uint8))
    reason = f"file name does not match data.subject_regex={CKPLUS_REGEX!r} (no subject id)"
    with pytest.raises(DataError) as e:
        _read(tmp_path, f"data.subject_regex={CKPLUS_REGEX}")
    assert f"1 bad item(s) in data set 'folder':\n  {stray}: {reason}\n" in str(e.value)
    records, problems = _read(tmp_path, f"data.subject_regex={CKPLUS_REGEX}", "data.on_error=skip", "data.folds=2")
    assert problems.items == [(str(stray), reason)]
    assert len(records) == 12 and str(stray) not in set(records["path"])


def test_bad_subject_and_fold_settings_name_their_key(tmp_path):
    _ckplus_tree(tmp_path, CKPLUS_SUBJECTS[:4], size=16)
    with pytest.raises(DataError, match=r"data.subject_regex='S\\\\d\+_' needs a group"):
        _read(tmp_path, r"data.subject_regex=S\d+_")
    with pytest.raises(DataError, match=r"data.subject_regex='\(S' is not a regular expression"):
        _read(tmp_path, "data.subject_regex=(S")
    with pytest.raises(DataError, match="data.folds=2 needs subject ids: set data.subject_regex"):
        _read(tmp_path, "data.folds=2")
    with pytest.raises(DataError, match="cannot make data.folds=5 subject folds"):
        _read(tmp_path, f"data.subject_regex={CKPLUS_REGEX}", "data.folds=5")
    split_tree = tmp_path / "split"
    _ckplus_tree(split_tree / "train", CKPLUS_SUBJECTS[:2], size=16)
    with pytest.raises(DataError, match="has split folders \\(train\\); data.folds makes subject folds"):
        _read(split_tree, f"data.subject_regex={CKPLUS_REGEX}", "data.folds=2")
    with pytest.raises(ConfigError, match="reader 'rafdb' of data set 'rafdb' keeps its own splits"):
        build_config(["data=rafdb", "data.folds=10"])
    with pytest.raises(ConfigError, match=r"need data.folds >= 2 and data.fold in 0..9"):
        build_config(["data=ckplus", "data.fold=10"])
    with pytest.raises(ConfigError, match="data.fold=1 needs data.folds"):
        build_config(["data=folder", "data.fold=1"])


def test_a_run_saved_when_every_data_set_carried_folds_still_resumes(tmp_path):
    """Configs saved before folds were opt-in hold ``folds: 10, fold: 0`` for every data set; resuming such a
    RAF-DB run must not be refused as folds on a reader with its own splits."""
    saved = OmegaConf.create(to_yaml(build_config(["data=rafdb"])))
    saved.data.folds, saved.data.fold = 10, 0
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(saved))
    cfg = resume_config(tmp_path, ["trainer.devices=1"])
    assert (cfg.data.folds, cfg.data.fold) == (None, None)
    saved = OmegaConf.create(to_yaml(build_config(["data=ckplus", "data.fold=3"])))
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(saved))
    assert resume_config(tmp_path, []).data.fold == 3  # a fold run keeps its fold


@pytest.mark.slow
def test_bench_runs_ten_subject_folds_and_reports_mean_and_std(tmp_path):
    """The subject-independent 10-fold CK+ protocol on a class-folder tree, in one ``bench`` command."""
    _ckplus_tree(tmp_path / "ck", CKPLUS_SUBJECTS, size=32)
    args = ["bench", "method=baseline", "data=folder", f"data.root={tmp_path / 'ck'}", "profile=cpu",
            f"data.subject_regex={CKPLUS_REGEX}", "data.folds=10", "data.num_workers=0", "data.image_size=32",
            "data.batch_size=16", "trainer.max_epochs=1", "trainer.progress_bar=false", "logger.wandb=false",
            f"runs_dir={tmp_path / 'runs'}", f"results_dir={tmp_path / 'results'}"]
    cwd = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-m", "fer_bench.cli", *args], capture_output=True, text=True, cwd=cwd)
    assert out.returncode == 0, out.stderr[-3000:]

    board = pd.read_csv(tmp_path / "results" / "leaderboard.csv")
    assert len(board) == 20 and board["fold"].dtype == np.int64 and sorted(board["fold"]) == sorted(list(range(10)) * 2)
    assert board["config_hash"].nunique() == 1 and board["splits_hash"].nunique() == 10  # one recipe, 10 splits
    assert (board.groupby("fold")["ckpt"].apply(sorted) == pd.Series([["best", "last"]] * 10)).all()
    for kind, label in (("best", "best (val-selected)"), ("last", "last")):
        rows = board[board["ckpt"] == kind]
        cells = "  ".join(f"{k} {mean_std(rows[f'test/{k}'])}" for k in ("acc", "uar", "f1"))
        assert f"  {label:<20} {cells}" in out.stdout.splitlines(), out.stdout
    assert "baseline-folder: mean ± std over 10 runs (10 subject folds × 1 seed(s))" in out.stdout
    summary = (tmp_path / "results" / "leaderboard.md").read_text().split("## All runs")[0]
    best = next(line for line in summary.splitlines() if "| best " in line)
    assert f"| {mean_std(board.loc[board['ckpt'] == 'best', 'test/acc'])} |" in best
    assert re.search(r"\|\s+1 \|\s+10 \|", best), best  # seeds 1, folds 10

    # No subject in two of train, val and test in any fold; the test folds partition the subjects, in order.
    tested = []
    for fold, run_dir in board[board["ckpt"] == "best"][["fold", "run_dir"]].itertuples(index=False):
        assert f"-fold{fold}-" in Path(run_dir).name
        assert json.loads((Path(run_dir) / "metrics.json").read_text())["fold"] == fold
        owners = {name: {_subject(p) for p in (Path(run_dir) / "splits" / f"{name}.txt").read_text().split()}
                  for name in ("train", "val", "test")}
        assert all(owners.values()), owners
        assert not (owners["train"] & owners["val"] or owners["train"] & owners["test"]
                    or owners["val"] & owners["test"]), (fold, owners)
        assert owners["train"] | owners["val"] | owners["test"] == set(CKPLUS_SUBJECTS)
        tested.append(sorted(owners["test"]))
    assert tested == [[s] for s in CKPLUS_SUBJECTS[:9]] + [CKPLUS_SUBJECTS[9:]]
