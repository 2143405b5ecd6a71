"""Bad input never passes silently: by default the run stops naming the file and line; with data.on_error=skip
the items are skipped, listed in the run directory and counted in the summary. Oversized images and pickled
checkpoints are refused."""

import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_png

from fer_bench.cli import skipped_line
from fer_bench.config import build_config
from fer_bench.data import layouts, records
from fer_bench.data.datamodule import DataNeeds, FERDataModule
from fer_bench.data.readers import cfee, read_records
from fer_bench.data.records import MAX_IMAGE_PIXELS, DataError, read_rgb
from fer_bench.engine.runner import load_weights

# The trees follow the releases named in test_dataset_readers.py (RAF-DB list_patition_label.txt, Kaggle
# fer2013.csv, FERPlus label.csv, AffectNet training.csv, SFEW class folders, CFEE_Database_230 names, CK+ emotion
# files, Aff-Wild2 per-video and MTL annotation files, ExpW label.lst), each with one kind of damage.
FOOTER = "Fix them, or set data.on_error=skip to skip, count and list them in the run directory."


def _cfg(card: str, root: Path, *extra: str):
    return build_config([f"data={card}", f"data.root={root}", "data.num_workers=0", *extra]).data


def _message(dataset: str, items: list[tuple[str, str]]) -> str:
    listed = "".join(f"  {where}: {reason}\n" for where, reason in items)
    return f"{len(items)} bad item(s) in data set '{dataset}':\n{listed}{FOOTER}"


def _raises(cfg, expected: str) -> None:
    with pytest.raises(DataError) as e:
        read_records(cfg)
    assert str(e.value) == expected


# ------------------------------------------------------------------------------------------------ missing root


def test_missing_root_names_the_data_set_and_where_to_request_it(tmp_path):
    request = "Request it from: e-mail the RAF-DB authors (Shan Li, Weihong Deng, BUPT); non-commercial research, " \
              "no redistribution."
    with pytest.raises(DataError) as e:
        read_records(build_config(["data=rafdb"]).data)
    assert str(e.value) == f"data set 'rafdb' needs its location: set data.root=/path/to/rafdb. {request}"
    with pytest.raises(DataError) as e:
        read_records(_cfg("rafdb", tmp_path / "nowhere"))
    assert str(e.value) == f"data.root={tmp_path / 'nowhere'} for data set 'rafdb' is not a folder. {request}"
    with pytest.raises(DataError) as e:
        read_records(_cfg("rafdb", tmp_path))
    assert str(e.value) == f"data set 'rafdb': label list {tmp_path}/basic/EmoLabel/list_patition_label.txt not found"


# ------------------------------------------------------------------------------------------------ RAF-DB tree


def _bad_rafdb(root: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """A RAF-DB tree with 10 good lines and one of each bad case; returns the expected problems and the paths
    of the images that stay."""
    good = [("train", 4)] * 4 + [("train", 5)] * 4 + [("test", 4), ("test", 5)]
    names = layouts.write_rafdb(root, good + [("train", 4)] * 3)
    list_file = root / "basic/EmoLabel/list_patition_label.txt"
    aligned = [root / "basic/Image/aligned" / f"{Path(n).stem}_aligned.jpg" for n in names]
    aligned[10].write_bytes(b"this is not an image")
    whole = aligned[11].read_bytes()
    aligned[11].write_bytes(whole[: len(whole) // 2])
    aligned[12].unlink()
    text = list_file.read_text()
    list_file.write_text(text + "train_00014.jpg 8\ntrain_00001.jpg 4\ntrain_00015.jpg\n")
    line = f"{list_file}:"
    expected = [
        (f"{line}14", "label 8 outside rafdb's 1..7"),
        (f"{line}16", "expected '<image> <label>', got 1 fields"),
        (f"{line}15", f"image {aligned[0]} is listed again (first at {line}1)"),
        (f"{line}11", f"cannot read image file {aligned[10]}: not a known image format or a damaged header"),
        (f"{line}12", f"truncated image file {aligned[11]} (no JPEG end marker)"),
        (f"{line}13", f"missing image file {aligned[12]}"),
    ]
    return expected, [str(p) for p in aligned[:10]]


def test_bad_images_labels_and_rows_stop_the_run_naming_file_and_line(tmp_path):
    expected, _ = _bad_rafdb(tmp_path)
    _raises(_cfg("rafdb", tmp_path), _message("rafdb", expected))


def test_skip_lists_bad_items_in_the_run_directory_and_the_summary(tmp_path):
    expected, kept = _bad_rafdb(tmp_path / "data")
    run = tmp_path / "run"
    dm = FERDataModule(_cfg("rafdb", tmp_path / "data", "data.on_error=skip"), DataNeeds(16), run_dir=run)
    dm.setup()
    assert sorted(dm.records["path"]) == sorted(kept)
    assert dm.problems.items == expected
    skipped = pd.read_csv(run / "skipped.csv")
    assert skipped.columns.tolist() == ["where", "reason"]
    assert list(skipped.itertuples(index=False, name=None)) == expected
    assert skipped_line(run) == f"  skipped 6 bad input item(s) (data.on_error=skip); listed in {run / 'skipped.csv'}"
    assert skipped_line(tmp_path) is None


def test_problems_are_found_before_training_starts(tmp_path):
    _bad_rafdb(tmp_path)
    dm = FERDataModule(_cfg("rafdb", tmp_path), DataNeeds(16))
    with pytest.raises(DataError, match=r"^6 bad item\(s\) in data set 'rafdb'"):
        dm.setup("fit")
    assert dm.datasets == {}


# ------------------------------------------------------------------------------------------------ decompression bomb


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` grey pixels (decoding it would allocate them)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def test_oversized_images_are_refused_before_decoding(tmp_path, monkeypatch):
    big, huge = tmp_path / "big.png", tmp_path / "huge.png"
    big.write_bytes(_png_declaring(10_000, 10_000))
    huge.write_bytes(_png_declaring(20_000, 20_000))

    def no_decoding(*args):
        raise AssertionError("decoded an oversized image")

    monkeypatch.setattr(records.cv2, "imread", no_decoding)
    with pytest.raises(DataError) as e:
        read_rgb(str(big))
    assert str(e.value) == (f"image {big} declares 10000x10000 pixels, more than {MAX_IMAGE_PIXELS} "
                            "(decompression-bomb limit)")
    with pytest.raises(DataError) as e:
        read_rgb(str(huge))
    assert str(e.value) == f"image {huge} declares more than {MAX_IMAGE_PIXELS} pixels (decompression-bomb limit)"


def test_oversized_image_in_a_data_set_is_skipped_and_listed(tmp_path):
    write_png(tmp_path / "happy" / "ok.png", np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "happy" / "bomb.png").write_bytes(_png_declaring(9000, 9000))
    bomb = tmp_path / "happy" / "bomb.png"
    reason = f"image {bomb} declares 9000x9000 pixels, more than {MAX_IMAGE_PIXELS} (decompression-bomb limit)"
    _raises(_cfg("folder", tmp_path), _message("folder", [(str(bomb), reason)]))
    kept, problems = read_records(_cfg("folder", tmp_path, "data.on_error=skip"))
    assert [Path(p).name for p in kept["path"]] == ["ok.png"] and problems.items == [(str(bomb), reason)]


# ------------------------------------------------------------------------------------------------ CSV formats


def test_fer2013_wrong_column_and_bad_rows_are_named_and_replayed_from_the_cache(tmp_path):
    file = tmp_path / "fer2013.csv"
    layouts.write_fer2013(file, [(3, "Training"), (7, "Training"), (2, "Validation"), (4, "PrivateTest")])
    lines = file.read_text().splitlines()
    short = lines[4].split(",")
    lines[4] = f"{short[0]},{short[1].rsplit(' ', 1)[0]},{short[2]}"  # one pixel missing
    file.write_text("\n".join(lines) + "\n")
    expected = [(f"{file}:3", "label 7 outside fer2013's 0..6"),
                (f"{file}:4", "Usage 'Validation' is none of Training, PublicTest, PrivateTest"),
                (f"{file}:5", "pixels hold 2303 values, expected 2304 (48x48)")]
    _raises(_cfg("fer2013", tmp_path), _message("fer2013", expected))
    kept, problems = read_records(_cfg("fer2013", tmp_path, "data.on_error=skip"))  # read back from the cache
    assert kept["expression"].tolist() == [1] and problems.items == expected

    file.write_text("emotion,pixel,Usage\n3,0 0,Training\n")
    with pytest.raises(DataError) as e:
        read_records(_cfg("fer2013", tmp_path))
    assert str(e.value) == f"data set 'fer2013': {file}: no column 'pixels'; columns are emotion, pixel, Usage"


def test_affectnet_csv_with_a_wrong_column_is_refused(tmp_path):
    layouts.write_affectnet(tmp_path, [{"file": "training", "expression": 1, "valence": 0, "arousal": 0,
                                        "box": (0, 0, 40, 40)}])
    file = tmp_path / "Manually_Annotated_file_lists/training.csv"
    file.write_text(file.read_text().replace("expression", "expresion"))
    with pytest.raises(DataError) as e:
        read_records(_cfg("affectnet", tmp_path))
    assert str(e.value) == (f"data set 'affectnet': {file}: no column 'expression'; columns are "
                            "subDirectory_filePath, face_x, face_y, face_width, face_height, facial_landmarks, "
                            "expresion, valence, arousal")


def test_affectnet_bad_values_missing_picture_and_pickled_npy(tmp_path):
    rows = [{"file": "training", "expression": e, "valence": v, "arousal": 0.0, "box": (0, 0, 40, 40)}
            for e, v in ((1, 0.0), (11, 0.0), (2, 1.5), (3, 0.0))]
    paths = layouts.write_affectnet(tmp_path / "a", rows)
    (tmp_path / "a/Manually_Annotated_Images" / paths[3]).unlink()
    file = tmp_path / "a/Manually_Annotated_file_lists/training.csv"
    picture = tmp_path / "a/Manually_Annotated_Images" / paths[3]
    _raises(_cfg("affectnet", tmp_path / "a"), _message("affectnet", [
        (f"{file}:3", "label 11 outside affectnet's 0..7"),
        (f"{file}:4", "valence 1.5 outside [-1, 1] (-2 marks none)"),
        (f"{file}:5", f"missing image file {picture}"),
    ]))
    ids = layouts.write_affectnet_npy(tmp_path / "b", [("train_set", 1, 0.1, 0.1), ("val_set", 2, 0.1, 0.1)])
    pickled = tmp_path / f"b/train_set/annotations/{ids[0]}_exp.npy"
    np.save(pickled, np.array([{"expression": 1}], dtype=object))
    _raises(_cfg("affectnet_npy", tmp_path / "b"), _message("affectnet_npy", [
        (str(pickled), f"cannot read {pickled}: Object arrays cannot be loaded when allow_pickle=False")]))


def test_affectnet_same_face_with_other_labels_is_named(tmp_path):
    # AffectNet release A rows (see test_dataset_readers.py): one picture and box listed with two expressions.
    picture = "689/737db2483489148d783ef278f43f486c0a97e140fc4b6b61b84363ca.jpg"
    rows = [{"file": "training", "image": picture, "expression": e, "valence": 0.1, "arousal": 0.1,
             "box": (2, 10, 40, 40)} for e in (1, 6)]
    layouts.write_affectnet(tmp_path, rows)
    file = tmp_path / "Manually_Annotated_file_lists/training.csv"
    _raises(_cfg("affectnet", tmp_path), _message("affectnet", [
        (f"{file}:3", f"face 2,10,40,40 of {picture} is listed again with other labels (first at {file}:2)")]))


def test_ferplus_truncated_png_and_malformed_vote_rows(tmp_path):
    names = layouts.write_ferplus(tmp_path, [("FER2013Train", [0, 10, 0, 0, 0, 0, 0, 0, 0, 0])] * 2)
    png = tmp_path / "FER2013Train" / names[1]
    png.write_bytes(png.read_bytes()[:-20])
    label = tmp_path / "FER2013Train/label.csv"
    label.write_text(label.read_text() + "fer0000009.png,1,2,3\nfer0000010.png,0,x,0,0,0,0,0,0,0,0\n")
    for folder in ("FER2013Valid", "FER2013Test"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "label.csv").write_text("")
    _raises(_cfg("ferplus", tmp_path), _message("ferplus", [
        (f"{label}:3", "expected an image name and 10 vote counts, got 4 fields"),
        (f"{label}:4", "vote counts must be numbers: 0, x, 0, 0, 0, 0, 0, 0, 0, 0"),
        (f"{label}:2", f"truncated image file {png} (no PNG end marker)"),
    ]))


# ------------------------------------------------------------------------------------------------ folder trees


def test_empty_class_folder_and_unknown_class_are_named(tmp_path):
    layouts.write_sfew(tmp_path, [("Train", "Angry"), ("Train", "Bored"), ("Val", "Sad")])
    (tmp_path / "Train" / "Fear").mkdir()
    _raises(_cfg("sfew", tmp_path), _message("sfew", [
        (str(tmp_path / "Train/Bored"), "folder name 'Bored' is not a known expression or compound class"),
        (str(tmp_path / "Train/Fear"), "class folder holds no images"),
    ]))
    kept, _ = read_records(_cfg("sfew", tmp_path, "data.on_error=skip"))
    assert kept["expression"].tolist() == [6, 2]


def test_cfee_bad_class_table_and_file_names(tmp_path):
    # CFEE_Database_230 layout (group folders, <class:2>_<subject:3>_<index>.jpg), see test_dataset_readers.py
    layouts.write_cfee(tmp_path, [("01-04/Images1", 2, 110, 2548), ("01-04/Images1", 2, 111, 2590)],
                       [(2, "happy"), (3, "bored")])
    image = tmp_path / "01-04/Images1/02_110_2548.jpg"
    (tmp_path / "01-04/Images1/02110.jpg").write_bytes(image.read_bytes())
    _raises(_cfg("cfee", tmp_path, "data.folds=2"), _message("cfee", [
        (f"{tmp_path / 'classes.csv'}:3", "class '3' 'bored' is not a numeric id with a known expression or "
                                         "compound name"),
        (str(tmp_path / "01-04/Images1/02110.jpg"), cfee.BAD_NAME),
    ]))
    with pytest.raises(DataError) as e:
        read_records(_cfg("cfee", tmp_path / "01-04"))
    assert str(e.value) == (f"data set 'cfee': {tmp_path / '01-04/classes.csv'} not found: export the class ids "
                            "and names of the 'summary' sheet of AU_annotation_all_subjects.xls as a CSV with columns "
                            "id,name (data.cfee.classes)")


def test_cfee_rejected_file_names_are_listed_before_the_fold_error(tmp_path):
    # Names in a layout that is not the release's (class and subject run together): every image is rejected, so
    # no subject is left for the folds; the rejected files come first, then the fold error.
    layouts.write_cfee(tmp_path, [("01-04/Images1", 2, 110, 2548)], [(2, "happy")])
    image = tmp_path / "01-04/Images1/02_110_2548.jpg"
    image.rename(tmp_path / "01-04/Images1/02110.jpg")
    with pytest.raises(DataError) as e:
        read_records(_cfg("cfee", tmp_path, "data.on_error=skip"))
    listed = f"  {tmp_path / '01-04/Images1/02110.jpg'}: {cfee.BAD_NAME}\n"
    assert str(e.value) == (f"1 bad item(s) in data set 'cfee':\n{listed}then: data set 'cfee': 0 subject(s) cannot "
                            "make data.folds=10 subject folds")


# ------------------------------------------------------------------------------------------------ annotation files


def test_ckplus_bad_emotion_code_and_missing_peak_frame(tmp_path):
    layouts.write_ckplus(tmp_path, [("S005", "001", 3, 9), ("S010", "001", 3, 1), ("S011", "001", 3, 2)])
    peak = tmp_path / "cohn-kanade-images/S010/001/S010_001_00000003.png"
    peak.unlink()
    emotion = tmp_path / "Emotion"
    _raises(_cfg("ckplus", tmp_path, "data.folds=2"), _message("ckplus", [
        (f"{emotion}/S005/001/S005_001_00000003_emotion.txt:1", "label 9.0000000e+00 outside ckplus's 0..7"),
        (f"{emotion}/S010/001/S010_001_00000003_emotion.txt:1", f"missing image file {peak}"),
    ]))


def test_abaw_bad_lines_are_named(tmp_path):
    folders = {"expr": "EXPR_Recognition_Challenge"}
    layouts.write_abaw(tmp_path, {"v1": {"set": "Train_Set", "expr": ["1", "abc", "9", "2,3"]}}, folders)
    file = tmp_path / "annotations/EXPR_Recognition_Challenge/Train_Set/v1.txt"
    _raises(_cfg("affwild2", tmp_path, "data.abaw.expr=EXPR_Recognition_Challenge"), _message("affwild2", [
        (f"{file}:3", "label 'abc' is not a number (affwild2_expr labels are 0..7)"),
        (f"{file}:4", "label 9 outside affwild2_expr's 0..7"),
        (f"{file}:5", "expected one expression label, got 2 fields"),
    ]))
    with pytest.raises(DataError, match=r"^data set 'affwild2': .*EXPR_Classification_Challenge not found \(set "):
        read_records(_cfg("affwild2", tmp_path))


def test_abaw_mtl_bad_rows_and_header_are_named(tmp_path):
    # 3rd/4th ABAW MTL_Challenge/train_set.txt format (see test_dataset_readers.py).
    rows = ["10-60-1280x720/00001.jpg,0.5,0.2,0,1,0,0,1,0,0,1,0,0,0,1,0",
            "10-60-1280x720/00002.jpg,0.5,1.2,0,1,0,0,1,0,0,1,0,0,0,1,0",
            "10-60-1280x720/00003.jpg,0.5,0.2,9,1,0,0,1,0,0,1,0,0,0,1,0",
            "10-60-1280x720/00004.jpg,0.5,0.2,0,1,0,0,1,0,0,1,0,0,0,2,0",
            "10-60-1280x720/00001.jpg,0.5,0.2,0,1,0,0,1,0,0,1,0,0,0,1,0"]
    layouts.write_abaw_mtl(tmp_path, {"train_set.txt": rows, "validation_set.txt": rows[:1]})
    folder = tmp_path / "annotations/MTL_Challenge"
    train, val = folder / "train_set.txt", folder / "validation_set.txt"
    _raises(_cfg("affwild2_mtl", tmp_path), _message("affwild2_mtl", [
        (f"{train}:3", "valence/arousal 0.5,1.2 above 1"),
        (f"{train}:4", "label 9 outside affwild2_expr's 0..7"),
        (f"{train}:5", "AU values must be 0, 1 or -1: 1,0,0,1,0,0,1,0,0,0,2,0"),
        (f"{train}:6", f"image 10-60-1280x720/00001.jpg is listed again (first at {train}:2)"),
        (f"{val}:2", f"image 10-60-1280x720/00001.jpg is listed again (first at {train}:2)"),
    ]))
    train.write_text(train.read_text().replace("AU26", "AU27"))
    with pytest.raises(DataError, match=r"^data set 'affwild2_mtl': .*train_set.txt: no column 'AU26'; columns are "
                                        r"image, valence, arousal, expression, AU1,"):
        read_records(_cfg("affwild2_mtl", tmp_path))


def test_expw_conflicting_face_box_outside_and_missing_scene(tmp_path):
    # ExpW label/label.lst lines (image face_id top left right bottom confidence label), release-shaped names.
    faces = [("angry_actor_104.jpg", 0, (10, 20, 60, 55), 80.0, 3),
             ("angry_actor_104.jpg", 0, (10, 20, 60, 55), 80.0, 4),
             ("angry_actor_104.jpg", 1, (95, 10, 40, 120), 50.0, 3),
             ("sad_woman_17.jpg", 0, (5, 5, 45, 45), 99.0, 6)]
    layouts.write_expw(tmp_path, faces)
    (tmp_path / "image/origin/sad_woman_17.jpg").unlink()
    file = tmp_path / "label/label.lst"
    _raises(_cfg("expw", tmp_path), _message("expw", [
        (f"{file}:2", f"face 0 of angry_actor_104.jpg is listed again with other values (first at {file}:1)"),
        (f"{file}:3", f"face box lies outside the 120x90 image {tmp_path / 'image/origin/angry_actor_104.jpg'}"),
        (f"{file}:4", f"missing image file {tmp_path / 'image/origin/sad_woman_17.jpg'}"),
    ]))


# ------------------------------------------------------------------------------------------------ checkpoints


class Payload:
    """Any Python object: loading it would need pickle."""


def test_checkpoint_with_a_pickled_object_is_refused(tmp_path):
    model = torch.nn.Linear(3, 2)
    clean, dirty = tmp_path / "clean.ckpt", tmp_path / "dirty.ckpt"
    torch.save({"state_dict": model.state_dict()}, clean)
    torch.save({"state_dict": model.state_dict(), "extra": Payload()}, dirty)
    other = torch.nn.Linear(3, 2)
    load_weights(other, clean)
    assert torch.equal(other.weight, model.weight)
    with pytest.raises(pickle.UnpicklingError, match=r"(?s)Weights only load failed.*Unsupported global: GLOBAL "
                                                     r"\S*Payload was not an allowed global"):
        load_weights(torch.nn.Linear(3, 2), dirty)
