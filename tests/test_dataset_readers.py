"""Every real data set's reader, end to end: the synthetic layout writers (fer_bench.data.layouts) write a tiny
tree in the data set's exact layout; the tests check records, canonical labels, dropped sentinels and splits."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fer_bench.config import ConfigError, build_config
from fer_bench.data import layouts
from fer_bench.data.datamodule import DataNeeds, FERDataModule
from fer_bench.data.readers import abaw, affectnet, ckplus, expw, fer2013, ferplus, read_records, sfew
from fer_bench.data.records import read_rgb

NA = pd.NA
ABAW_FOLDERS = {"expr": "EXPR_Classification_Challenge", "va": "VA_Estimation_Challenge",
                "au": "AU_Detection_Challenge"}


def _read(card: str, root: Path, *extra: str):
    return read_records(build_config([f"data={card}", f"data.root={root}", *extra]).data)


def _rel(records: pd.DataFrame, root: Path) -> list[str]:
    return [Path(p).relative_to(root).as_posix() for p in records["path"]]


def _tail(records: pd.DataFrame, parts: int) -> list[str]:
    """The last ``parts`` components of every path (for images in the cache, whose folder name is a hash)."""
    return ["/".join(Path(p).parts[-parts:]) for p in records["path"]]


# ------------------------------------------------------------------------------------------------ RAF-DB


def test_rafdb_basic_maps_one_based_labels_and_splits_by_prefix(tmp_path):
    names = layouts.write_rafdb(tmp_path, [("train", 4), ("train", 1), ("train", 7), ("test", 5), ("test", 6)])
    assert names == ["train_00001.jpg", "train_00002.jpg", "train_00003.jpg", "test_0001.jpg", "test_0002.jpg"]
    assert (tmp_path / "basic/EmoLabel/list_patition_label.txt").read_text().splitlines()[0] == "train_00001.jpg 4"
    records, problems = _read("rafdb", tmp_path)
    assert _rel(records, tmp_path) == [f"basic/Image/aligned/{Path(n).stem}_aligned.jpg" for n in names]
    # 4 Happiness → happy 1, 1 Surprise → 3, 7 Neutral → 0, 5 Sadness → sad 2, 6 Anger → anger 6
    assert records["expression"].tolist() == [1, 3, 0, 2, 6]
    assert records["split"].tolist() == ["train"] * 3 + ["test"] * 2
    assert records["compound"].isna().all() and set(records["domain"]) == {"rafdb"}
    assert not problems.items and not problems.dropped
    original, _ = _read("rafdb", tmp_path / "basic", "data.variant=original")
    assert _rel(original, tmp_path) == [f"basic/Image/original/{n}" for n in names]
    assert read_rgb(original["path"][0]).shape == (96, 96, 3)


def test_rafdb_compound_maps_to_cfee_compound_ids(tmp_path):
    layouts.write_rafdb(tmp_path, [("train", 1), ("train", 8), ("train", 9), ("test", 11)], compound=True)
    records, _ = _read("rafdb_compound", tmp_path)
    # 1 HS → happily surprised 0, 8 FS → fearfully surprised 7, 9 AS → angrily surprised 9 (skips FD 8), 11 DS → 11
    assert records["compound"].tolist() == [0, 7, 9, 11]
    assert records["expression"].isna().all()
    assert records["split"].tolist() == ["train", "train", "train", "test"]
    assert _rel(records, tmp_path)[0] == "compound/Image/aligned/train_00001_aligned.jpg"


# ------------------------------------------------------------------------------------------------ FER2013


def test_fer2013_pixels_are_decoded_once_into_the_cache(tmp_path, monkeypatch):
    layouts.write_fer2013(tmp_path / "fer2013.csv", [(0, "Training"), (3, "PublicTest"), (6, "PrivateTest"),
                                                     (1, "Training")])
    records, problems = _read("fer2013", tmp_path)
    # 0 Angry → 6, 3 Happy → 1, 6 Neutral → 0, 1 Disgust → 5
    assert records["expression"].tolist() == [6, 1, 0, 5]
    assert records["split"].tolist() == ["train", "val", "test", "train"]
    assert _tail(records, 2) == ["images/000002.png", "images/000003.png", "images/000004.png", "images/000005.png"]
    assert records["source"].tolist() == [f"{tmp_path / 'fer2013.csv'}:{i}" for i in (2, 3, 4, 5)]
    pixels = np.array(layouts.fer2013_pixels(3, 1).split(), dtype=np.uint8).reshape(48, 48)
    image = read_rgb(records["path"][1])
    assert image.shape == (48, 48, 3) and (image == pixels[..., None]).all()
    assert not problems.items

    def rebuilt(*args):
        raise AssertionError("decoded again")

    monkeypatch.setattr(fer2013, "_decode", rebuilt)
    again, _ = _read("fer2013", tmp_path)
    assert again["path"].tolist() == records["path"].tolist()


# ------------------------------------------------------------------------------------------------ FERPlus

VOTES = [
    ("FER2013Train", [0, 10, 0, 0, 0, 0, 0, 0, 0, 0]),  # happiness, unanimous
    ("FER2013Train", [6, 0, 0, 4, 0, 0, 0, 0, 0, 0]),  # neutral 60 %, sadness 40 %
    ("FER2013Train", [5, 5, 0, 0, 0, 0, 0, 0, 0, 0]),  # tie: no majority; probability 50/50
    ("FER2013Valid", [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]),  # only single votes: all zeroed
    ("FER2013Valid", [2, 0, 0, 0, 0, 0, 0, 0, 8, 0]),  # unknown wins
    ("FER2013Test", [4, 0, 3, 0, 3, 0, 0, 0, 0, 0]),  # neutral 40 %, surprise 30 %, anger 30 %
    ("FER2013Test", [2, 2, 2, 2, 0, 0, 0, 0, 0, 0]),  # four-way tie: too spread
    ("FER2013Test", [0, 0, 0, 0, 0, 0, 1, 9, 0, 0]),  # contempt (the single fear vote is dropped)
]


@pytest.mark.parametrize("box", [False, True])
def test_ferplus_majority_keeps_clear_winners_and_counts_drops(tmp_path, box):
    names = layouts.write_ferplus(tmp_path, VOTES, box=box)
    records, problems = _read("ferplus", tmp_path)
    assert _rel(records, tmp_path) == [f"FER2013Train/{names[0]}", f"FER2013Train/{names[1]}",
                                       f"FER2013Test/{names[7]}"]
    assert records["expression"].tolist() == [1, 0, 7]
    assert records["split"].tolist() == ["train", "train", "test"]
    assert problems.dropped == {ferplus.NO_MAJORITY: 4, ferplus.UNKNOWN: 1}
    assert not any(c.startswith("prob") for c in records.columns)
    assert read_rgb(records["path"][0]).shape == (48, 48, 3)


def test_ferplus_probability_keeps_the_vote_distribution(tmp_path):
    layouts.write_ferplus(tmp_path, VOTES)
    records, problems = _read("ferplus", tmp_path, "data.ferplus.label_mode=probability")
    assert records["expression"].tolist() == [1, 0, 0, 0, 7]
    assert records["split"].tolist() == ["train", "train", "train", "test", "test"]
    probs = records[[f"prob{i}" for i in range(8)]].to_numpy()
    np.testing.assert_allclose(probs, [[0, 1, 0, 0, 0, 0, 0, 0],
                                       [0.6, 0, 0.4, 0, 0, 0, 0, 0],
                                       [0.5, 0.5, 0, 0, 0, 0, 0, 0],
                                       [0.4, 0, 0, 0.3, 0, 0, 0.3, 0],
                                       [0, 0, 0, 0, 0, 0, 0, 1]])
    assert problems.dropped == {ferplus.SPREAD: 2, ferplus.UNKNOWN: 1}


def test_ferplus_vote_rule_matches_the_reference_on_edge_cases():
    def label(votes, mode):
        dist, reason = ferplus.vote_label(np.array(votes, float), mode)
        return reason if dist is None else np.round(dist, 3).tolist()

    assert label([3, 3, 3, 0, 0, 0, 0, 0, 1, 0], "probability") == [0.333, 0.333, 0.333, 0, 0, 0, 0, 0]
    assert label([3, 3, 3, 0, 0, 0, 0, 0, 1, 0], "majority") == ferplus.NO_MAJORITY
    assert label([6, 0, 0, 0, 0, 0, 0, 0, 2, 2], "probability") == [1, 0, 0, 0, 0, 0, 0, 0]  # unknown after neutral
    assert label([4, 0, 0, 0, 0, 0, 0, 0, 4, 2], "probability") == ferplus.SPREAD  # neutral alone is not > 50 %
    assert label([0, 0, 0, 0, 0, 0, 0, 0, 6, 4], "probability") == ferplus.UNKNOWN
    assert label([6, 0, 0, 0, 0, 0, 0, 0, 0, 0], "majority") == [1, 0, 0, 0, 0, 0, 0, 0]


# ------------------------------------------------------------------------------------------------ AffectNet

AFFECTNET_ROWS = [
    {"file": "training", "expression": 1, "valence": 0.5, "arousal": 0.25, "box": (10, 8, 40, 44)},
    {"file": "training", "expression": 7, "valence": -0.4, "arousal": 0.1, "box": (30, 20, 36, 36)},
    {"file": "training", "expression": 9, "valence": -2, "arousal": -2, "box": (5, 5, 30, 30)},
    {"file": "training", "expression": 2, "valence": 0.0, "arousal": 0.0, "box": (-1, -1, -1, -1)},
    {"file": "training", "expression": 0, "valence": -2, "arousal": -2, "box": (0, 0, 50, 50)},
    {"file": "validation", "expression": 6, "valence": -0.3, "arousal": 0.6, "box": (20, 10, 50, 50)},
]


def test_affectnet_csv_crops_the_box_drops_sentinels_and_masks_va(tmp_path):
    paths = layouts.write_affectnet(tmp_path, AFFECTNET_ROWS)
    records, problems = _read("affectnet", tmp_path)
    assert _tail(records, 4) == ["crops/train/0/0000.png", "crops/train/1/0001.png", "crops/train/1/0004.png",
                                 "crops/test/2/0005.png"]
    assert records["expression"].tolist() == [1, 7, 0, 6]
    assert records["split"].tolist() == ["train", "train", "train", "test"]
    np.testing.assert_array_equal(records["valence"], [0.5, -0.4, np.nan, -0.3])
    np.testing.assert_array_equal(records["arousal"], [0.25, 0.1, np.nan, 0.6])
    assert problems.dropped == {affectnet.SENTINEL: 1, affectnet.NO_FACE: 1}
    full = read_rgb(str(tmp_path / "Manually_Annotated_Images" / paths[0]))
    np.testing.assert_array_equal(read_rgb(records["path"][0]), full[8:8 + 44, 10:10 + 40])  # x, y, width, height


def test_affectnet7_card_drops_contempt_in_the_datamodule(tmp_path):
    rows = [{"file": "training", "expression": e, "valence": 0.1, "arousal": 0.1, "box": (4, 4, 40, 40)}
            for e in (1, 1, 1, 1, 0, 0, 0, 0, 7, 7)]
    rows += [{"file": "validation", "expression": e, "valence": 0.1, "arousal": 0.1, "box": (4, 4, 40, 40)}
             for e in (1, 0)]
    layouts.write_affectnet(tmp_path, rows)
    cfg = build_config(["data=affectnet7", f"data.root={tmp_path}"]).data
    assert (cfg.space, cfg.drop_outside_space) == ("basic7", True)
    dm = FERDataModule(cfg, DataNeeds(16), run_dir=tmp_path / "run")
    dm.setup()
    counts = dm.records.groupby(["split", "expression"]).size().to_dict()
    assert counts == {("test", 0): 1, ("test", 1): 1, ("train", 0): 3, ("train", 1): 3, ("val", 0): 1,
                      ("val", 1): 1}
    assert (tmp_path / "run/dropped.csv").read_text() == "reason,count\nexpression outside label space 'basic7',2\n"


def test_affectnet_npy_release(tmp_path):
    ids = layouts.write_affectnet_npy(tmp_path, [("train_set", 3, 0.1, 0.2), ("train_set", 10, -2, -2),
                                                 ("train_set", 7, -2, 0.5), ("val_set", 5, -0.5, 0.5)])
    records, problems = _read("affectnet_npy", tmp_path)
    assert _rel(records, tmp_path) == [f"train_set/images/{ids[0]}.jpg", f"train_set/images/{ids[2]}.jpg",
                                       f"val_set/images/{ids[3]}.jpg"]
    assert records["expression"].tolist() == [3, 7, 5]
    assert records["split"].tolist() == ["train", "train", "test"]
    np.testing.assert_array_equal(records["valence"], [0.1, np.nan, -0.5])
    assert problems.dropped == {affectnet.SENTINEL: 1} and not problems.items


# ------------------------------------------------------------------------------------------------ CK+

CK_SEQUENCES = [("S005", "001", 5, 3), ("S010", "002", 4, 5), ("S011", "001", 3, None), ("S022", "003", 2, 7),
                ("S030", "001", 4, 1)]


def test_ckplus_last_frames_first_neutral_and_unlabelled_sequences(tmp_path):
    layouts.write_ckplus(tmp_path, CK_SEQUENCES)
    records, problems = _read("ckplus", tmp_path, "data.folds=2", "data.fold=0")
    frames = [Path(p).name for p in records["path"]]
    assert frames == ["S005_001_00000001.png", "S005_001_00000003.png", "S005_001_00000004.png",
                      "S005_001_00000005.png", "S010_002_00000001.png", "S010_002_00000002.png",
                      "S010_002_00000003.png", "S010_002_00000004.png", "S022_003_00000001.png",
                      "S022_003_00000002.png", "S030_001_00000001.png", "S030_001_00000002.png",
                      "S030_001_00000003.png", "S030_001_00000004.png"]
    # 3 disgust → 5, 5 happy → 1, 7 surprise → 3 (its 2 frames are both among the last 3), 1 anger → 6
    assert records["expression"].tolist() == [0, 5, 5, 5, 0, 1, 1, 1, 3, 3, 0, 6, 6, 6]
    assert problems.dropped == {ckplus.UNLABELLED: 1}
    peak_only, _ = _read("ckplus", tmp_path, "data.ckplus.last_frames=1", "data.ckplus.first_neutral=false",
                         "data.folds=2")
    assert [Path(p).name for p in peak_only["path"]] == ["S005_001_00000005.png", "S010_002_00000004.png",
                                                         "S022_003_00000002.png", "S030_001_00000004.png"]


def test_ckplus_folds_are_subject_disjoint_and_cover_every_subject(tmp_path):
    layouts.write_ckplus(tmp_path, CK_SEQUENCES)
    held = []
    for fold in range(3):
        records, _ = _read("ckplus", tmp_path, "data.folds=3", f"data.fold={fold}")
        test = set(records.loc[records["split"] == "test", "subject"])
        assert not test & set(records.loc[records["split"] == "train", "subject"])
        held.append(sorted(test))
    # sorted subjects S005 S010 S022 S030, fold length 4 // 3 = 1, the last fold takes the remainder
    assert held == [["S005"], ["S010"], ["S022", "S030"]]
    with pytest.raises(ConfigError, match=r"data.fold=3 data.folds=3: need data.folds >= 2 and data.fold in 0..2"):
        _read("ckplus", tmp_path, "data.folds=3", "data.fold=3")  # refused with the config, before any reading


# ------------------------------------------------------------------------------------------------ SFEW


def test_sfew_uses_its_table_val_becomes_test_and_test_is_counted(tmp_path):
    layouts.write_sfew(tmp_path, [("Train", "Angry"), ("Train", "Happy"), ("Train", "Neutral"), ("Val", "Sad"),
                                  ("Val", "Surprise"), ("Test", None), ("Test", None)])
    records, problems = _read("sfew", tmp_path)
    assert _rel(records, tmp_path) == ["Train/Angry/0000.png", "Train/Happy/0001.png", "Train/Neutral/0002.png",
                                       "Val/Sad/0003.png", "Val/Surprise/0004.png"]
    assert records["expression"].tolist() == [6, 1, 0, 2, 3]
    assert records["split"].tolist() == ["train", "train", "train", "test", "test"]
    assert problems.dropped == {sfew.UNLABELLED: 2}


# ------------------------------------------------------------------------------------------------ ExpW

EXPW_FACES = [("a.jpg", 0, (10, 20, 60, 55), 80.5, 3), ("a.jpg", 1, (40, 70, 110, 85), 60.1, 0),
              ("b.jpg", 0, (5, 5, 45, 45), 99.0, 6)]


def test_expw_crops_rows_top_bottom_and_drops_duplicate_lines(tmp_path):
    layouts.write_expw(tmp_path, EXPW_FACES, extra_lines=("a.jpg 0 10 20 60 55 80.5 3\n",))
    records, problems = _read("expw", tmp_path)
    assert _tail(records, 2) == ["crops/a_0.png", "crops/a_1.png", "crops/b_0.png"]
    assert records["expression"].tolist() == [1, 6, 0]  # 3 happy, 0 angry, 6 neutral
    assert records["split"].isna().all()
    assert problems.dropped == {expw.DUPLICATE: 1}
    scene = read_rgb(str(tmp_path / "image/origin/a.jpg"))
    crop = read_rgb(records["path"][0])
    assert crop.shape == (45, 40, 3)  # rows 10:55 (top:bottom), columns 20:60 (left:right)
    np.testing.assert_array_equal(crop, scene[10:55, 20:60])


def test_expw_split_is_carved_seeded_and_stratified(tmp_path):
    faces = [(f"{i}.jpg", 0, (2, 2, 30, 30), 90.0, label) for i, label in enumerate([3, 0] * 10)]
    layouts.write_expw(tmp_path, faces, scene=(32, 32))
    cfg = build_config(["data=expw", f"data.root={tmp_path}", "data.num_workers=0"]).data
    dm = FERDataModule(cfg, DataNeeds(16), run_dir=tmp_path / "run")
    dm.setup()
    counts = dm.records.groupby(["split", "expression"]).size().to_dict()
    assert counts == {("test", 1): 2, ("test", 6): 2, ("train", 1): 7, ("train", 6): 7, ("val", 1): 1,
                      ("val", 6): 1}
    assert (tmp_path / "run/splits/test.txt").read_text().count("\n") == 4


# ------------------------------------------------------------------------------------------------ Aff-Wild2

ABAW_VIDEOS = {
    "10-60-1280x720": {"set": "Train_Set", "expr": ["0", "4", "-1", "7"], "missing": {2},
                       "va": ["0.5,0.2", "-5,-5", "0.1,-0.3", "0,0"],
                       "au": ["1,0,0,1,0,0,1,0,0,0,1,0", "0,0,0,0,0,0,0,0,0,0,0,0",
                              "-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1", "1,1,1,1,1,1,1,1,1,1,-1,1"]},
    "video5_left": {"set": "Validation_Set", "expr": ["6"]},
    "video5_right": {"set": "Validation_Set", "expr": ["1"]},
}


def test_abaw_expr_skips_header_maps_frames_and_counts_sentinels(tmp_path):
    layouts.write_abaw(tmp_path, ABAW_VIDEOS, ABAW_FOLDERS)
    records, problems = _read("affwild2", tmp_path)
    assert _rel(records, tmp_path) == ["cropped_aligned/10-60-1280x720/00001.jpg",
                                       "cropped_aligned/10-60-1280x720/00004.jpg",
                                       "cropped_aligned/video5_left/00001.jpg",
                                       "cropped_aligned/video5_right/00001.jpg"]
    assert records["expression"].tolist() == [0, 8, 3, 6]  # Neutral, Other, Surprise, Anger
    assert records["subject"].tolist() == ["10-60-1280x720", "10-60-1280x720", "video5_left", "video5_right"]
    assert records["split"].tolist() == ["train", "train", "test", "test"]
    assert problems.dropped == {"Aff-Wild2 EXPR: sentinel (no label)": 1, abaw.NO_IMAGE: 1}


def test_abaw_multitask_merges_tasks_per_frame_with_masks(tmp_path):
    layouts.write_abaw(tmp_path, ABAW_VIDEOS, ABAW_FOLDERS)
    records, problems = _read("affwild2", tmp_path, "data.abaw.tasks=[EXPR,VA,AU]")
    video = records[records["subject"] == "10-60-1280x720"]
    assert [Path(p).name for p in video["path"]] == ["00001.jpg", "00003.jpg", "00004.jpg"]
    assert video["expression"].tolist() == [0, NA, 8]
    np.testing.assert_array_equal(video[["valence", "arousal"]], [[0.5, 0.2], [0.1, -0.3], [0, 0]])
    np.testing.assert_array_equal(video[["au1", "au6", "au12", "au25"]],
                                  [[1, 1, 1, 1], [np.nan] * 4, [1, 1, 1, np.nan]])
    assert problems.dropped == {"Aff-Wild2 EXPR: sentinel (no label)": 1, "Aff-Wild2 VA: sentinel (no label)": 1,
                                "Aff-Wild2 AU: sentinel (no label)": 1, abaw.NO_IMAGE: 1}


# ------------------------------------------------------------------------------------------------ CFEE

CFEE_CLASSES = [(1, "neutral"), (2, "happy"), (3, "fearful"), (8, "happily surprised"), (22, "awed")]


def test_cfee_maps_classes_by_name_and_folds_by_subject(tmp_path):
    layouts.write_cfee(tmp_path, [(2, 1), (3, 1), (8, 1), (1, 2), (2, 2), (22, 3), (3, 4)], CFEE_CLASSES)
    records, problems = _read("cfee", tmp_path, "data.folds=2", "data.fold=1")
    assert _rel(records, tmp_path) == ["001/02001.jpg", "001/03001.jpg", "001/08001.jpg", "002/01002.jpg",
                                       "002/02002.jpg", "003/22003.jpg", "004/03004.jpg"]
    assert records["expression"].tolist() == [1, 4, NA, 0, 1, NA, 4]
    assert records["compound"].tolist() == [NA, NA, 0, NA, NA, 14, NA]
    assert records["subject"].tolist() == ["001", "001", "001", "002", "002", "003", "004"]
    assert records["split"].tolist() == ["train"] * 5 + ["test"] * 2  # fold 1 of 2 holds out subjects 003, 004
    assert not problems.items


def test_compound_folders_card_reads_compound_class_folders(tmp_path):
    for i, name in enumerate(["Happily_Surprised", "sadly-angry", "awed"]):
        layouts.write_jpg(tmp_path / name / f"{i}.jpg", layouts.face(compound=0, index=i, size=24))
    records, _ = _read("compound_folders", tmp_path)
    assert records["compound"].tolist() == [0, 14, 3] and records["expression"].isna().all()
