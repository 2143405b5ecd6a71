"""Every real data set's reader, end to end: the synthetic layout writers (fer_bench.data.layouts) write a tiny
tree in the data set's exact layout; the tests check records, canonical labels, dropped sentinels and splits."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fer_bench.config import ConfigError, build_config
from fer_bench.data import layouts
from fer_bench.data.datamodule import DataNeeds, FERDataModule
from fer_bench.data.readers import abaw, affectnet, cfee, ckplus, expw, fer2013, ferplus, read_records, sfew
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
    # RAF-DB basic (Li, Deng & Du, CVPR 2017): basic/EmoLabel/list_patition_label.txt begins "train_00001.jpg 5",
    # "train_00002.jpg 5", "train_00003.jpg 4", "train_00004.jpg 4"; test lines "test_0001.jpg 5"; aligned images
    # basic/Image/aligned/<stem>_aligned.jpg, full ones basic/Image/original/<name>.
    labels = [("train", 5), ("train", 5), ("train", 4), ("train", 4), ("train", 1), ("train", 7), ("test", 5),
              ("test", 6)]
    names = layouts.write_rafdb(tmp_path, labels)
    assert names[:2] + names[-2:] == ["train_00001.jpg", "train_00002.jpg", "test_0001.jpg", "test_0002.jpg"]
    assert (tmp_path / "basic/EmoLabel/list_patition_label.txt").read_text().splitlines()[:4] == [
        "train_00001.jpg 5", "train_00002.jpg 5", "train_00003.jpg 4", "train_00004.jpg 4"]
    records, problems = _read("rafdb", tmp_path)
    assert _rel(records, tmp_path) == [f"basic/Image/aligned/{Path(n).stem}_aligned.jpg" for n in names]
    # 5 Sadness → sad 2, 4 Happiness → happy 1, 1 Surprise → 3, 7 Neutral → 0, 6 Anger → anger 6
    assert records["expression"].tolist() == [2, 2, 1, 1, 3, 0, 2, 6]
    assert records["split"].tolist() == ["train"] * 6 + ["test"] * 2
    assert records["compound"].isna().all() and set(records["domain"]) == {"rafdb"}
    assert not problems.items and not problems.dropped
    original, _ = _read("rafdb", tmp_path / "basic", "data.variant=original")
    assert _rel(original, tmp_path) == [f"basic/Image/original/{n}" for n in names]
    assert read_rgb(original["path"][0]).shape == (96, 96, 3)


def test_rafdb_compound_maps_to_cfee_compound_ids(tmp_path):
    # RAF-DB compound: compound/EmoLabel/list_patition_label.txt, same line format, labels 1-11 (1 Happily Surprised).
    layouts.write_rafdb(tmp_path, [("train", 1), ("train", 8), ("train", 9), ("test", 11)], compound=True)
    records, _ = _read("rafdb_compound", tmp_path)
    # 1 HS → happily surprised 0, 8 FS → fearfully surprised 7, 9 AS → angrily surprised 9 (skips FD 8), 11 DS → 11
    assert records["compound"].tolist() == [0, 7, 9, 11]
    assert records["expression"].isna().all()
    assert records["split"].tolist() == ["train", "train", "train", "test"]
    assert _rel(records, tmp_path)[0] == "compound/Image/aligned/train_00001_aligned.jpg"


# ------------------------------------------------------------------------------------------------ FER2013


def test_fer2013_pixels_are_decoded_once_into_the_cache(tmp_path, monkeypatch):
    # Kaggle ICML 2013 fer2013.csv: header emotion,pixels,Usage; rows "0,70 80 82 ...,Training" (2304 grey values).
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

# microsoft/FERPlus fer2013new.csv: its header and first seven data rows, then one PublicTest and one PrivateTest row
# in the same format (FER2013 row order: PublicTest starts at row 28709, PrivateTest at 32298).
FER2013NEW = """Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF
Training,fer0000000.png,4,0,0,1,3,2,0,0,0,0
Training,fer0000001.png,6,0,1,1,0,0,0,0,2,0
Training,fer0000002.png,5,0,0,3,1,0,0,0,1,0
Training,fer0000003.png,4,0,0,4,1,0,0,0,1,0
Training,fer0000004.png,9,0,0,1,0,0,0,0,0,0
Training,fer0000005.png,6,0,0,1,0,0,1,1,1,0
Training,fer0000006.png,2,0,0,8,0,0,0,0,0,0
PublicTest,fer0028709.png,1,0,8,0,1,0,0,0,0,0
PrivateTest,fer0032298.png,0,0,0,0,7,3,0,0,0,0
"""


def test_ferplus_majority_on_the_first_rows_of_fer2013new(tmp_path):
    written = layouts.write_ferplus_from_fer2013new(tmp_path, FER2013NEW)
    line = (tmp_path / "FER2013Train/label.csv").read_text().splitlines()[0]
    assert line == 'fer0000000.png,"(0, 0, 48, 48)",4,0,0,1,3,2,0,0,0,0'  # the repository's label.csv format
    records, problems = _read("ferplus", tmp_path)
    assert _rel(records, tmp_path) == [w for w in written if w[-6:-4] not in ("00", "03")]
    # single votes zeroed, then > 50 %: 0000000 neutral 4 of 9 and 0000003 neutral = sadness 4 of 8 are dropped
    assert records["expression"].tolist() == [0, 0, 0, 0, 2, 3, 6]
    assert records["split"].tolist() == ["train"] * 5 + ["val", "test"]
    assert problems.dropped == {ferplus.NO_MAJORITY: 2} and not problems.items


# Hand-made vote rows in the header-less label.csv format of the repository (data/FER2013Train/label.csv) for the
# edge cases of the reference rule (src/ferplus.py).
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

# AffectNet release A (Mollahosseini et al. 2017): Manually_Annotated_file_lists/training.csv with the header
# subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal and rows such
# as 689/737db2483489148d783ef278f43f486c0a97e140fc4b6b61b84363ca.jpg,134,134,899,899,"181.64;530.91;...",1,0.785714,
# -0.055556 (68 landmark pairs joined by ';'); expression 8-10 and VA -2 are the sentinels, face_width -1 = no face.
AFFECTNET_ROWS = [
    {"file": "training", "expression": 1, "valence": 0.785714, "arousal": -0.055556, "box": (10, 8, 40, 44)},
    {"file": "training", "expression": 7, "valence": -0.4, "arousal": 0.1, "box": (30, 20, 36, 36)},
    {"file": "training", "expression": 9, "valence": -2, "arousal": -2, "box": (5, 5, 30, 30)},
    {"file": "training", "expression": 2, "valence": 0.0, "arousal": 0.0, "box": (-1, -1, -1, -1)},
    {"file": "training", "expression": 0, "valence": -2, "arousal": -2, "box": (0, 0, 50, 50)},
    {"file": "validation", "expression": 6, "valence": -0.3, "arousal": 0.6, "box": (20, 10, 50, 50)},
]


def _crop_name(image: str, split: str, box: tuple[int, int, int, int]) -> str:
    return f"crops/{split}/{Path(image).with_suffix('')}_{'_'.join(map(str, box))}.png"


def test_affectnet_csv_crops_the_box_drops_sentinels_and_masks_va(tmp_path):
    paths = layouts.write_affectnet(tmp_path, AFFECTNET_ROWS)
    records, problems = _read("affectnet", tmp_path)
    kept = [0, 1, 4, 5]
    assert _tail(records, 4) == [_crop_name(paths[i], "train" if i < 5 else "test", AFFECTNET_ROWS[i]["box"])
                                 for i in kept]
    assert _tail(records, 4)[0] == f"crops/train/{paths[0][:-4]}_10_8_40_44.png"
    assert records["expression"].tolist() == [1, 7, 0, 6]
    assert records["split"].tolist() == ["train", "train", "train", "test"]
    np.testing.assert_array_equal(records["valence"], [0.785714, -0.4, np.nan, -0.3])
    np.testing.assert_array_equal(records["arousal"], [-0.055556, 0.1, np.nan, 0.6])
    assert problems.dropped == {affectnet.SENTINEL: 1, affectnet.NO_FACE: 1}
    full = read_rgb(str(tmp_path / "Manually_Annotated_Images" / paths[0]))
    np.testing.assert_array_equal(read_rgb(records["path"][0]), full[8:8 + 44, 10:10 + 40])  # x, y, width, height


def test_affectnet_picture_listed_twice_gives_two_crops_with_their_own_labels(tmp_path):
    # Two faces of one picture (happy at the left, anger at the right), then the first row repeated exactly.
    picture = "689/737db2483489148d783ef278f43f486c0a97e140fc4b6b61b84363ca.jpg"
    rows = [{"file": "training", "image": picture, "expression": 1, "valence": 0.8, "arousal": 0.1,
             "box": (2, 10, 40, 40)},
            {"file": "training", "image": picture, "expression": 6, "valence": -0.6, "arousal": 0.7,
             "box": (50, 20, 40, 40)},
            {"file": "training", "image": picture, "expression": 1, "valence": 0.8, "arousal": 0.1,
             "box": (2, 10, 40, 40)},
            {"file": "validation", "expression": 0, "valence": 0.0, "arousal": 0.0, "box": (4, 4, 40, 40)}]
    layouts.write_affectnet(tmp_path, rows)
    records, problems = _read("affectnet", tmp_path)
    assert _tail(records, 4)[:2] == [_crop_name(picture, "train", (2, 10, 40, 40)),
                                     _crop_name(picture, "train", (50, 20, 40, 40))]
    assert records["expression"].tolist() == [1, 6, 0]
    np.testing.assert_array_equal(records["valence"], [0.8, -0.6, 0.0])
    full = read_rgb(str(tmp_path / "Manually_Annotated_Images" / picture))
    left, right = read_rgb(records["path"][0]), read_rgb(records["path"][1])
    np.testing.assert_array_equal(left, full[10:50, 2:42])
    np.testing.assert_array_equal(right, full[20:60, 50:90])
    assert np.abs(left.astype(int) - right.astype(int)).mean() > 5  # two faces, not one file written twice
    assert problems.dropped == {affectnet.DUPLICATE: 1} and not problems.items
    cfg = build_config(["data=affectnet", f"data.root={tmp_path}"]).data
    dm = FERDataModule(cfg, DataNeeds(16), run_dir=tmp_path / "run")
    dm.label_and_split(records, problems)
    assert affectnet.DUPLICATE in (tmp_path / "run/dropped.csv").read_text()


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
    # AffectNet release B (224x224 crops): train_set/images/<id>.jpg with train_set/annotations/<id>_exp.npy,
    # <id>_val.npy, <id>_aro.npy (one value each, stored as a string) and <id>_lnd.npy (68x2).
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

# CK+ (Lucey et al., CVPR-W 2010): cohn-kanade-images/S005/001/S005_001_00000001.png ...; the label of a sequence is
# Emotion/S005/001/S005_001_00000011_emotion.txt, named after its last (peak) frame, holding "   3.0000000e+00"
# (S005/001: 11 frames, disgust); sequences without an emotion file are unlabelled.
CK_SEQUENCES = [("S005", "001", 11, 3), ("S010", "002", 4, 5), ("S011", "001", 3, None), ("S022", "003", 2, 7),
                ("S030", "001", 4, 1)]


def test_ckplus_last_frames_first_neutral_and_unlabelled_sequences(tmp_path):
    layouts.write_ckplus(tmp_path, CK_SEQUENCES)
    label = tmp_path / "Emotion/S005/001/S005_001_00000011_emotion.txt"
    assert label.read_text() == "   3.0000000e+00\n"
    records, problems = _read("ckplus", tmp_path, "data.folds=2", "data.fold=0")
    frames = [Path(p).name for p in records["path"]]
    assert frames == ["S005_001_00000001.png", "S005_001_00000009.png", "S005_001_00000010.png",
                      "S005_001_00000011.png", "S010_002_00000001.png", "S010_002_00000002.png",
                      "S010_002_00000003.png", "S010_002_00000004.png", "S022_003_00000001.png",
                      "S022_003_00000002.png", "S030_001_00000001.png", "S030_001_00000002.png",
                      "S030_001_00000003.png", "S030_001_00000004.png"]
    # 3 disgust → 5, 5 happy → 1, 7 surprise → 3 (its 2 frames are both among the last 3), 1 anger → 6
    assert records["expression"].tolist() == [0, 5, 5, 5, 0, 1, 1, 1, 3, 3, 0, 6, 6, 6]
    assert problems.dropped == {ckplus.UNLABELLED: 1}
    peak_only, _ = _read("ckplus", tmp_path, "data.ckplus.last_frames=1", "data.ckplus.first_neutral=false",
                         "data.folds=2")
    assert [Path(p).name for p in peak_only["path"]] == ["S005_001_00000011.png", "S010_002_00000004.png",
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


# SFEW 2.0 (Dhall et al., EmotiW 2015 release): Train/<Class>/ and Val/<Class>/ frames named <movie>_<frame>.png
# (e.g. Airheads_000519240.png), unlabelled Test/; the aligned-face release keeps the same class folders under
# Train/Train_Aligned_Faces/ and Val/Val_Aligned_Faces/.
SFEW_ITEMS = [("Train", "Angry"), ("Train", "Happy"), ("Train", "Neutral"), ("Val", "Sad"), ("Val", "Surprise"),
              ("Test", None), ("Test", None)]


def test_sfew_uses_its_table_val_becomes_test_and_test_is_counted(tmp_path):
    paths = layouts.write_sfew(tmp_path, SFEW_ITEMS)
    assert paths[0] == "Train/Angry/Airheads_000519240.png"
    records, problems = _read("sfew", tmp_path)
    assert _rel(records, tmp_path) == paths[:5]
    assert records["expression"].tolist() == [6, 1, 0, 2, 3]
    assert records["split"].tolist() == ["train", "train", "train", "test", "test"]
    assert problems.dropped == {sfew.UNLABELLED: 2}


def test_sfew_aligned_face_release(tmp_path):
    paths = layouts.write_sfew(tmp_path, SFEW_ITEMS, aligned=True)
    assert paths[3] == "Val/Val_Aligned_Faces/Sad/Sixteen_Candles_000523353.png"
    records, problems = _read("sfew", tmp_path)
    assert _rel(records, tmp_path) == ["Train/Train_Aligned_Faces/Angry/Airheads_000519240.png",
                                       "Train/Train_Aligned_Faces/Happy/Hangover_000520611.png",
                                       "Train/Train_Aligned_Faces/Neutral/HarryPotter_Deathly_Hallows_000521982.png",
                                       "Val/Val_Aligned_Faces/Sad/Sixteen_Candles_000523353.png",
                                       "Val/Val_Aligned_Faces/Surprise/TheTerminal_000524724.png"]
    assert records["expression"].tolist() == [6, 1, 0, 2, 3]
    assert records["split"].tolist() == ["train", "train", "train", "test", "test"]
    assert problems.dropped == {sfew.UNLABELLED: 2} and not problems.items
    # Both releases unpacked side by side: aligned faces by default, the frames with data.variant=original.
    layouts.write_sfew(tmp_path, SFEW_ITEMS)
    assert _rel(_read("sfew", tmp_path)[0], tmp_path) == _rel(records, tmp_path)
    frames, dropped = _read("sfew", tmp_path, "data.variant=original")
    assert _rel(frames, tmp_path) == [p.replace(f"{s}/{s}_Aligned_Faces/", f"{s}/") for p, s in zip(
        _rel(records, tmp_path), ["Train"] * 3 + ["Val"] * 2, strict=True)]
    assert dropped.dropped == {sfew.UNLABELLED: 2} and not dropped.items


# ------------------------------------------------------------------------------------------------ ExpW

# ExpW (Zhang et al., IJCV 2018) label/label.lst: "image_name face_id face_box_top face_box_left face_box_right
# face_box_bottom face_box_cofidence expression_label"; the three faces below are lines of the release (e.g.
# "afraid_African_214.jpg 0 33 275 342 100 68.6817 2"), plus a second face of afraid_African_214.jpg.
EXPW_FACES = [("amazed_actor_579.jpg", 0, (16, 161, 354, 209), 38.5907, 6),
              ("afraid_African_214.jpg", 0, (33, 275, 342, 100), 68.6817, 2),
              ("afraid_African_214.jpg", 1, (40, 20, 120, 100), 45.2031, 3),
              ("excited_girl_40.jpg", 0, (160, 352, 544, 352), 68.0181, 5)]


def test_expw_crops_rows_top_bottom_and_drops_duplicate_lines(tmp_path):
    layouts.write_expw(tmp_path, EXPW_FACES, scene=(360, 560),
                       extra_lines=("amazed_actor_579.jpg 0 16 161 354 209 38.5907 6\n",))
    records, problems = _read("expw", tmp_path)
    assert _tail(records, 2) == ["crops/amazed_actor_579_0.png", "crops/afraid_African_214_0.png",
                                 "crops/afraid_African_214_1.png", "crops/excited_girl_40_0.png"]
    assert records["expression"].tolist() == [0, 4, 1, 3]  # 6 neutral, 2 fear, 3 happy, 5 surprise
    assert records["split"].isna().all()
    assert problems.dropped == {expw.DUPLICATE: 1}
    scene = read_rgb(str(tmp_path / "image/origin/afraid_African_214.jpg"))
    crop = read_rgb(records["path"][1])
    assert crop.shape == (67, 67, 3)  # rows 33:100 (top:bottom), columns 275:342 (left:right)
    np.testing.assert_array_equal(crop, scene[33:100, 275:342])


def test_expw_split_is_carved_seeded_and_stratified(tmp_path):
    faces = [(f"{'happy' if label == 3 else 'angry'}_people_{i}.jpg", 0, (2, 2, 30, 30), 90.0, label)
             for i, label in enumerate([3, 0] * 10)]
    layouts.write_expw(tmp_path, faces, scene=(32, 32))
    cfg = build_config(["data=expw", f"data.root={tmp_path}", "data.num_workers=0"]).data
    dm = FERDataModule(cfg, DataNeeds(16), run_dir=tmp_path / "run")
    dm.setup()
    counts = dm.records.groupby(["split", "expression"]).size().to_dict()
    assert counts == {("test", 1): 2, ("test", 6): 2, ("train", 1): 7, ("train", 6): 7, ("val", 1): 1,
                      ("val", 6): 1}
    assert (tmp_path / "run/splits/test.txt").read_text().count("\n") == 4


# ------------------------------------------------------------------------------------------------ Aff-Wild2

# Aff-Wild2 (Kollias & Zafeiriou; ABAW annotations/EXPR_Classification_Challenge/Train_Set/<video>.txt): a header
# line "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other" (VA: "valence,arousal"; AU:
# "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26"), then line i + 1 for frame i ↔ cropped_aligned/<video>/
# <i:05d>.jpg; -1 (EXPR, AU) and -5 (VA) mark frames without a label; two-person videos carry _left/_right.
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


# The same frames in the multi-task challenge's single CSV per set (3rd/4th ABAW MTL_Challenge/train_set.txt:
# header image,valence,arousal,expression,AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26; VA -5, expression
# -1 and AU -1 mark missing labels).
ABAW_MTL = {
    "train_set.txt": ["10-60-1280x720/00001.jpg,0.5,0.2,0,1,0,0,1,0,0,1,0,0,0,1,0",
                      "10-60-1280x720/00002.jpg,-5,-5,4,0,0,0,0,0,0,0,0,0,0,0,0",
                      "10-60-1280x720/00003.jpg,0.1,-0.3,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1",
                      "10-60-1280x720/00004.jpg,0,0,7,1,1,1,1,1,1,1,1,1,1,-1,1"],
    "validation_set.txt": ["video5_left/00001.jpg,-5,-5,6,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1",
                           "video5_right/00001.jpg,-5,-5,1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1"],
}


def test_abaw_mtl_csv_gives_the_records_of_the_per_task_files(tmp_path):
    layouts.write_abaw_mtl(tmp_path / "mtl", ABAW_MTL, missing={"10-60-1280x720/00002.jpg"})
    records, problems = _read("affwild2_mtl", tmp_path / "mtl")
    assert _rel(records, tmp_path / "mtl") == ["cropped_aligned/10-60-1280x720/00001.jpg",
                                               "cropped_aligned/10-60-1280x720/00003.jpg",
                                               "cropped_aligned/10-60-1280x720/00004.jpg",
                                               "cropped_aligned/video5_left/00001.jpg",
                                               "cropped_aligned/video5_right/00001.jpg"]
    assert records["expression"].tolist() == [0, NA, 8, 3, 6]
    np.testing.assert_array_equal(records[["valence", "arousal"]], [[0.5, 0.2], [0.1, -0.3], [0, 0],
                                                                    [np.nan] * 2, [np.nan] * 2])
    np.testing.assert_array_equal(records[["au1", "au2", "au6", "au12", "au25"]],
                                  [[1, 0, 1, 1, 1], [np.nan] * 5, [1, 1, 1, 1, np.nan], [np.nan] * 5, [np.nan] * 5])
    assert records["subject"].tolist() == ["10-60-1280x720"] * 3 + ["video5_left", "video5_right"]
    assert records["split"].tolist() == ["train"] * 3 + ["test"] * 2
    train = tmp_path / "mtl/annotations/MTL_Challenge/train_set.txt"
    assert records["source"].tolist()[:3] == [f"{train}:2", f"{train}:4", f"{train}:5"]
    assert problems.dropped == {"Aff-Wild2 EXPR: sentinel (no label)": 1, "Aff-Wild2 VA: sentinel (no label)": 3,
                                "Aff-Wild2 AU: sentinel (no label)": 3, abaw.NO_IMAGE: 1}
    # The same frames as per-task files (test above) read to the same records.
    layouts.write_abaw(tmp_path / "tasks", ABAW_VIDEOS, ABAW_FOLDERS)
    per_task, _ = _read("affwild2", tmp_path / "tasks", "data.abaw.tasks=[EXPR,VA,AU]")
    pd.testing.assert_frame_equal(records.drop(columns=["path", "source"]),
                                  per_task.drop(columns=["path", "source"]))
    assert _rel(per_task, tmp_path / "tasks") == _rel(records, tmp_path / "mtl")


# ------------------------------------------------------------------------------------------------ CFEE

# The class table as exported from the 'summary' sheet of AU_annotation_all_subjects.xls (CFEE_Database_230; order
# of Du, Tao & Martinez, PNAS 2014, Fig. 1). File names and group folders imitate the release:
# 01-04/Images1/09_110_2555.jpg, and ids past 22 (23_178_6632.jpg) that the sheet does not list.
CFEE_NAMES = ["neutral", "happy", "sad", "fearful", "angry", "surprised", "disgusted", "happily surprised",
              "happily disgusted", "sadly fearful", "sadly angry", "sadly surprised", "sadly disgusted",
              "fearfully angry", "fearfully surprised", "fearfully disgusted", "angrily surprised",
              "angrily disgusted", "disgustedly surprised", "appalled", "hatred", "awed"]
CFEE_CLASSES = list(enumerate(CFEE_NAMES, start=1))
CFEE_ITEMS = [("01-04/Images1", 1, 110, 2547), ("01-04/Images1", 2, 110, 2548), ("01-04/Images1", 9, 110, 2555),
              ("05-08/Images2", 4, 178, 6611), ("05-08/Images2", 23, 178, 6632), ("05-08/Images2", 22, 201, 7001),
              ("05-08/Images2", 24, 201, 7010), ("05-08/Images2", 23, 201, 7011)]


def test_cfee_reads_real_file_names_in_group_folders_and_counts_unmapped_ids(tmp_path, caplog):
    paths = layouts.write_cfee(tmp_path, CFEE_ITEMS, CFEE_CLASSES)
    assert paths[2] == "01-04/Images1/09_110_2555.jpg"
    records, problems = _read("cfee", tmp_path, "data.folds=2", "data.fold=1")
    assert _rel(records, tmp_path) == ["01-04/Images1/01_110_2547.jpg", "01-04/Images1/02_110_2548.jpg",
                                       "01-04/Images1/09_110_2555.jpg", "05-08/Images2/04_178_6611.jpg",
                                       "05-08/Images2/22_201_7001.jpg"]
    assert records["expression"].tolist() == [0, 1, NA, 4, NA]  # neutral, happy, -, fearful, -
    assert records["compound"].tolist() == [NA, NA, 1, NA, 14]  # happily disgusted, awed
    assert records["subject"].tolist() == ["110", "110", "110", "178", "201"]
    assert records["split"].tolist() == ["train"] * 3 + ["test"] * 2  # fold 1 of 2 holds out subjects 178, 201
    table = tmp_path / "classes.csv"
    assert problems.dropped == {cfee.unmapped("23", table, "05-08/Images2/23_178_6632.jpg"): 2,
                                cfee.unmapped("24", table, "05-08/Images2/24_201_7010.jpg"): 1}
    assert not problems.items
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        f"skipped 2 image(s): {cfee.unmapped('23', table, '05-08/Images2/23_178_6632.jpg')}",
        f"skipped 1 image(s): {cfee.unmapped('24', table, '05-08/Images2/24_201_7010.jpg')}"]


def test_cfee_class_table_from_data_cfee_classes_maps_ids_past_22(tmp_path):
    layouts.write_cfee(tmp_path, CFEE_ITEMS, CFEE_CLASSES)
    table = tmp_path / "my_classes.csv"
    table.write_text((tmp_path / "classes.csv").read_text() + "23,neutral\n24,happy\n")
    records, problems = _read("cfee", tmp_path, "data.folds=2", f"data.cfee.classes={table}")
    assert len(records) == 8 and not problems.dropped
    past_22 = records["path"].str.contains("_6632|_7011|_7010")  # sorted: 23_178, 23_201, 24_201
    assert records.loc[past_22, "expression"].tolist() == [0, 0, 1]


def test_compound_folders_card_reads_compound_class_folders(tmp_path):
    for i, name in enumerate(["Happily_Surprised", "sadly-angry", "awed"]):
        layouts.write_jpg(tmp_path / name / f"{i}.jpg", layouts.face(compound=0, index=i, size=24))
    records, _ = _read("compound_folders", tmp_path)
    assert records["compound"].tolist() == [0, 14, 3] and records["expression"].isna().all()
