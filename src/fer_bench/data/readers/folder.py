"""Class-folder trees: ``root/<class>/<image>`` or ``root/<split>/<class>/<image>``.

Class folder names map through the alias tables of ``labels.py`` (angry → anger, happiness → happy, ...), or
to compound ids for compound names (``Happily_Surprised``). Split folder names: train/training, val/valid/
validation, test/testing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from fer_bench.data.readers.common import image_files
from fer_bench.data.records import Problems
from fer_bench.labels import compound_id, expression_id

SPLIT_FOLDERS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "test": "test", "testing": "test"}


def label_columns(name: str) -> dict[str, int] | None:
    """``{"expression": id}`` or ``{"compound": id}`` of a class name; None when it is neither."""
    try:
        return {"expression": expression_id(name)}
    except KeyError:
        pass
    try:
        return {"compound": compound_id(name)}
    except KeyError:
        return None


def class_rows(class_dir: Path, split: str | None, problems: Problems,
               labels_of: Callable[[str], dict[str, int] | None] = label_columns) -> list[dict]:
    """Rows of the images in one class folder; an unknown class name or an empty folder is a problem."""
    labels = labels_of(class_dir.name)
    if labels is None:
        problems.add(str(class_dir), f"folder name '{class_dir.name}' is not a known expression or compound class")
        return []
    images = image_files(class_dir)
    if not images:
        problems.add(str(class_dir), "class folder holds no images")
    return [{"path": p, "split": split, **labels} for p in images]


def read(root: Path, data_cfg, problems: Problems) -> pd.DataFrame:
    """Records of a class-folder tree."""
    subdirs = sorted(d for d in root.iterdir() if d.is_dir())
    split_dirs = [d for d in subdirs if d.name.lower() in SPLIT_FOLDERS]
    rows: list[dict] = []
    if split_dirs:
        for split_dir in split_dirs:
            split = SPLIT_FOLDERS[split_dir.name.lower()]
            for class_dir in sorted(d for d in split_dir.iterdir() if d.is_dir()):
                rows.extend(class_rows(class_dir, split, problems))
    else:
        for class_dir in subdirs:
            rows.extend(class_rows(class_dir, None, problems))
    return pd.DataFrame(rows, columns=["path", "split", "expression", "compound"])
