"""AffectNet (docs/datasets.md §3.3), two releases.

Release A (``reader: affectnet``, the original manually annotated release): ``training.csv`` and
``validation.csv`` in ``Manually_Annotated_file_lists/`` (or ``Manual_Annot_files/``, or ``data.root`` itself),
columns ``subDirectory_filePath, face_x, face_y, face_width, face_height, facial_landmarks, expression, valence,
arousal``; full pictures under ``Manually_Annotated_Images/<subDirectory_filePath>``. Each face is cut out with its
box once into ``data.cache_dir`` (data/cache.py), one crop per row named after picture and box
(``crops/<split>/<subdir>/<name>_<x>_<y>_<w>_<h>.png``), so two faces of one picture keep their own labels; rows with
``face_width < 0`` have no face and are dropped. A row repeating a picture, box and labels is dropped and counted; the
same picture and box with other labels is an error.

Release B (``reader: affectnet_npy``): 224x224 crops ``{train,val}_set/images/<id>.jpg`` with one-value arrays
``{train,val}_set/annotations/<id>_{exp,val,aro}.npy`` (read with ``allow_pickle=False``).

Both: expression 0–7 in AffectNet order (canonical ids are the same); 8 None, 9 Uncertain, 10 Non-Face are dropped
and counted; valence/arousal −2 (the sentinel of those rows) become missing. Official training → train, official
validation → test: the test set was never released, so fer-bench carves its own val from train.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from fer_bench.data.cache import cached_records, source_key
from fer_bench.data.readers.common import cut_faces, first_dir, native_label, read_table
from fer_bench.data.records import Problems
from fer_bench.labels import NATIVE_TABLES

LIST_FOLDERS = ("Manually_Annotated_file_lists", "Manual_Annot_files", ".")
IMAGE_FOLDER = "Manually_Annotated_Images"
FILES = {"training.csv": "train", "validation.csv": "test"}
COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "expression", "valence",
           "arousal")
SENTINEL = "AffectNet: expression 8-10 (none, uncertain, non-face)"
NO_FACE = "AffectNet: no face box (face_width < 0)"
DUPLICATE = "AffectNet: same picture, face box and labels listed again"
NPY_SETS = {"train_set": "train", "val_set": "test"}


def _va(text: str, name: str) -> float:
    value = float(text)
    if value == -2:
        return math.nan
    if not -1 <= value <= 1:
        raise ValueError(f"{name} {text} outside [-1, 1] (-2 marks none)")
    return value


def labels(expression: str, valence: str, arousal: str, problems: Problems) -> dict | None:
    """Canonical labels of one annotation; None when it is a dropped sentinel. ValueError when malformed."""
    try:
        if float(expression) in (8, 9, 10):
            problems.drop(SENTINEL)
            return None
    except ValueError:
        pass  # native_label names the bad value
    return {"expression": native_label(expression, NATIVE_TABLES["affectnet"]),
            "valence": _va(valence, "valence"), "arousal": _va(arousal, "arousal")}


def _crop_all(root: Path, folder: Path, problems: Problems, workers: int) -> pd.DataFrame:
    lists = first_dir(root, LIST_FOLDERS, "AffectNet file list (training.csv)")
    rows, boxes, seen = [], defaultdict(list), {}
    for name, split in FILES.items():
        file = lists / name
        for i, row in enumerate(read_table(file, COLUMNS).to_dict("records")):
            where = f"{file}:{i + 2}"
            try:
                x, y, w, h = (int(float(row[c])) for c in ("face_x", "face_y", "face_width", "face_height"))
                if w < 0:
                    problems.drop(NO_FACE)
                    continue
                label = labels(row["expression"], row["valence"], row["arousal"], problems)
            except ValueError as e:
                problems.add(where, str(e))
                continue
            if label is None:
                continue
            image = row["subDirectory_filePath"]
            face, values = (image, x, y, w, h), (row["expression"], row["valence"], row["arousal"])
            if face in seen:
                first, first_values = seen[face]
                if values == first_values:
                    problems.drop(DUPLICATE)
                else:
                    problems.add(where, f"face {x},{y},{w},{h} of {image} is listed again with other labels "
                                        f"(first at {first})")
                continue
            seen[face] = where, values
            crop = Path("crops") / split / f"{Path(image).with_suffix('')}_{x}_{y}_{w}_{h}.png"  # one file per face
            boxes[image].append((where, y, y + h, x, x + w, folder / crop))
            rows.append({"path": str(crop), **label, "split": split, "domain": "affectnet", "source": where})
    return pd.DataFrame(cut_faces(root / IMAGE_FOLDER, boxes, rows, problems, workers),
                        columns=["path", "expression", "valence", "arousal", "split", "domain", "source"])


def read_csv(root: Path, data_cfg, problems: Problems) -> pd.DataFrame:
    """Release A: the manually annotated CSVs and full pictures, faces cut out once into the cache by
    ``data.num_workers`` processes; a killed cutting resumes where it stopped."""
    lists = first_dir(root, LIST_FOLDERS, "AffectNet file list (training.csv)")
    key = source_key("affectnet", [lists / name for name in FILES if (lists / name).is_file()], {})
    return cached_records(data_cfg, key, lambda folder, found: _crop_all(root, folder, found, data_cfg.num_workers),
                          problems, resume=True)


def _npy_value(path: Path) -> str:
    try:
        value = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {path}: {e}") from None
    if value.size != 1:
        raise ValueError(f"{path} holds {value.size} values, expected one")
    return str(value.item())


def read_npy(root: Path, data_cfg, problems: Problems) -> pd.DataFrame:
    """Release B: 224x224 crops with per-image ``.npy`` annotations."""
    rows = []
    for set_name, split in NPY_SETS.items():
        annotations = root / set_name / "annotations"
        if not annotations.is_dir():
            raise FileNotFoundError(f"{annotations} not found (AffectNet release B: train_set/, val_set/)")
        for exp_file in sorted(annotations.glob("*_exp.npy")):
            stem = exp_file.name[: -len("_exp.npy")]
            try:
                values = [_npy_value(annotations / f"{stem}_{part}.npy") for part in ("exp", "val", "aro")]
                label = labels(*values, problems)
            except ValueError as e:
                problems.add(str(exp_file), str(e))
                continue
            if label is not None:
                rows.append({"path": str(root / set_name / "images" / f"{stem}.jpg"), **label, "split": split,
                             "domain": "affectnet", "source": str(exp_file)})
    return pd.DataFrame(rows)
