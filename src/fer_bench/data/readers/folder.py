"""Class-folder trees: ``root/<class>/<image>`` or ``root/<split>/<class>/<image>``.

Class folder names map through the alias tables of ``labels.py`` (angry → anger, happiness → happy, ...), or
to compound ids for compound names (``Happily_Surprised``). Split folder names: train/training, val/valid/
validation, test/testing.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fer_bench.data.records import Problems
from fer_bench.labels import compound_id, expression_id

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
SPLIT_FOLDERS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "test": "test", "testing": "test"}


def _label_columns(name: str) -> dict[str, int] | None:
    try:
        return {"expression": expression_id(name)}
    except KeyError:
        pass
    try:
        return {"compound": compound_id(name)}
    except KeyError:
        return None


def _class_rows(class_dir: Path, split: str | None, problems: Problems) -> list[dict]:
    labels = _label_columns(class_dir.name)
    if labels is None:
        problems.add(str(class_dir), f"folder name '{class_dir.name}' is not a known expression or compound class")
        return []
    images = sorted(p for p in class_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        problems.add(str(class_dir), "class folder holds no images")
    return [{"path": str(p), "split": split, **labels} for p in images]


def read(root: Path, data_cfg, problems: Problems) -> pd.DataFrame:
    """Records of a class-folder tree."""
    subdirs = sorted(d for d in root.iterdir() if d.is_dir())
    split_dirs = [d for d in subdirs if d.name.lower() in SPLIT_FOLDERS]
    rows: list[dict] = []
    if split_dirs:
        for split_dir in split_dirs:
            split = SPLIT_FOLDERS[split_dir.name.lower()]
            for class_dir in sorted(d for d in split_dir.iterdir() if d.is_dir()):
                rows.extend(_class_rows(class_dir, split, problems))
    else:
        for class_dir in subdirs:
            rows.extend(_class_rows(class_dir, None, problems))
    return pd.DataFrame(rows, columns=["path", "split", "expression", "compound"])
