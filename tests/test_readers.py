"""Readers produce the exact records of fixture trees; bad input is named or skipped and listed."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_png
from omegaconf import OmegaConf

from fer_bench.config import build_config
from fer_bench.data.readers import read_records
from fer_bench.data.readers.common import IMAGE_SUFFIXES, image_files
from fer_bench.data.records import DataError, read_rgb


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (20, 20, 3), dtype=np.uint8)


def _data_cfg(data: str, root: Path, *extra: str):
    return build_config([f"data={data}", f"data.root={root}", *extra]).data


def test_folder_reader_without_splits(tmp_path):
    # Class folders without splits, as the CK+48 mirror (anger/S010_004_00000017.png ...) and RAF-DB compound
    # folder exports (Happily_Surprised/train_00001_aligned.jpg) ship them; folder names in several spellings.
    files = [("anger", "S010_004_00000017.png"), ("anger", "S010_004_00000018.png"),
             ("happiness", "S011_006_00000013.png"), ("surprised", "S014_001_00000029.png"),
             ("Happily_Surprised", "train_00001_aligned.png")]
    for i, (cls, name) in enumerate(files):
        write_png(tmp_path / cls / name, _image(i))
    records, problems = read_records(_data_cfg("folder", tmp_path))
    got = sorted(zip(records["path"].map(lambda p: Path(p).relative_to(tmp_path).as_posix()),
                     records["expression"].tolist(), records["compound"].tolist(), strict=True))
    assert got == [("Happily_Surprised/train_00001_aligned.png", pd.NA, 0), ("anger/S010_004_00000017.png", 6, pd.NA),
                   ("anger/S010_004_00000018.png", 6, pd.NA), ("happiness/S011_006_00000013.png", 1, pd.NA),
                   ("surprised/S014_001_00000029.png", 3, pd.NA)]
    assert records["split"].isna().all() and not problems.items


def test_folder_reader_with_split_folders(tmp_path):
    # Split and class folders as in the Kaggle FER-2013 image mirror (train/sad/Training_10022789.jpg,
    # test/neutral/PrivateTest_10086748.jpg), here with a validation folder too.
    for folder, usage in (("train", "Training"), ("validation", "PublicTest"), ("test", "PrivateTest")):
        write_png(tmp_path / folder / "sad" / f"{usage}_10022789.png", _image(0))
        write_png(tmp_path / folder / "neutral" / f"{usage}_10086748.jpg", _image(1))
    records, _ = read_records(_data_cfg("folder", tmp_path))
    assert sorted(records["split"].value_counts().items()) == [("test", 2), ("train", 2), ("val", 2)]
    assert sorted(records["expression"].unique().tolist()) == [0, 2]


def test_folder_reader_names_unknown_class_folder(tmp_path):
    write_png(tmp_path / "bored" / "Training_10118481.png", _image(0))
    write_png(tmp_path / "happy" / "Training_10019449.png", _image(0))
    with pytest.raises(DataError, match="bored.*not a known expression"):
        read_records(_data_cfg("folder", tmp_path))
    records, problems = read_records(_data_cfg("folder", tmp_path, "data.on_error=skip"))
    assert len(records) == 1 and len(problems.items) == 1


def test_csv_reader_records_and_bad_rows(tmp_path):
    # fer-bench's own labels.csv (README, data=csv): path,expression[,valence,arousal,subject,split].
    for name in ("a", "b", "c"):
        write_png(tmp_path / "img" / f"{name}.png", _image(0))
    (tmp_path / "labels.csv").write_text(
        "path,expression,valence,arousal,subject,split\n"
        "img/a.png,Happy,0.5,0.25,s1,train\n"
        "img/b.png,3,-0.5,0.0,s2,test\n"
        "img/c.png,bored,0,0,s3,train\n"
        "img/missing.png,sad,0,0,s4,train\n"
    )
    with pytest.raises(DataError) as e:
        read_records(_data_cfg("csv", tmp_path))
    assert "labels.csv:4" in str(e.value) and "bored" in str(e.value) and "missing.png" in str(e.value)
    records, problems = read_records(_data_cfg("csv", tmp_path, "data.on_error=skip"))
    assert records["expression"].tolist() == [1, 3]
    assert records["valence"].tolist() == [0.5, -0.5] and records["subject"].tolist() == ["s1", "s2"]
    assert problems.items == [(f"{tmp_path / 'labels.csv'}:4", "unknown expression name 'bored'; known: neutral, "
                               "happy, sad, surprise, fear, disgust, anger, contempt, other (and common aliases)"),
                              (f"{tmp_path / 'labels.csv'}:5", f"missing image file {tmp_path / 'img/missing.png'}")]


def test_csv_reader_missing_column(tmp_path):
    (tmp_path / "labels.csv").write_text("file,label\nx.png,happy\n")
    with pytest.raises(DataError, match="no column 'path'"):
        read_records(_data_cfg("csv", tmp_path))


def test_missing_root_says_what_to_set():
    cfg = build_config(["data=folder"]).data
    with pytest.raises(DataError, match="set data.root="):
        read_records(cfg)


def test_decode_is_rgb_and_grayscale_becomes_three_channels(tmp_path):
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 200  # pure red
    write_png(tmp_path / "red.png", rgb)
    assert read_rgb(str(tmp_path / "red.png"))[0, 0].tolist() == [200, 0, 0]
    import cv2

    cv2.imwrite(str(tmp_path / "gray.png"), np.full((8, 8), 77, np.uint8))
    gray = read_rgb(str(tmp_path / "gray.png"))
    assert gray.shape == (8, 8, 3) and gray[0, 0].tolist() == [77, 77, 77]


def test_synthetic_card_reads_through_the_csv_path():
    cfg = build_config(["data.synth.subjects=6", "data.synth.per_subject=1", "data.synth.size=32"]).data
    records, _ = read_records(cfg)
    assert len(records) == 6 * 7
    assert set(records["split"]) == {"train", "val", "test"}
    assert {"valence", "arousal", "au12"} <= set(records.columns)
    assert OmegaConf.select(cfg, "reader") == "synthetic"


def test_image_listing_matches_sorted_rglob_order(tmp_path):
    """``image_files`` (scandir, no stat per file) lists what ``sorted(Path.rglob)`` lists, in the same order."""
    for name in ("a/b.jpg", "a/b/x.png", "a-c/z.JPG", "a/.png", "a/png", "a/b/c/d.jpeg", "a.b/q.png", "A/k.png",
                 "a/b.", "a/notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "link").symlink_to(tmp_path / "a")
    reference = sorted(p for p in tmp_path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    assert image_files(tmp_path) == [str(p) for p in reference]
    assert len(reference) == 6
