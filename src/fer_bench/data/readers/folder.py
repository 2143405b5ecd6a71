r"""Class-folder trees: ``root/<class>/<image>`` or ``root/<split>/<class>/<image>``.

Class folder names map through the alias tables of ``labels.py`` (angry → anger, happiness → happy, ...), or
to compound ids for compound names (``Happily_Surprised``). Split folder names: train/training, val/valid/
validation, test/testing.

Subjects: ``data.subject_regex``, searched in each file name, gives the subject id as its first group, e.g.
``^(S\d+)_`` for CK+ frames (``S005_001_00000011.png``) or ``^([A-Z]{2})\.`` for JAFFE
(``KA.AN1.39.tiff``). Carved splits then keep each subject's images together, and ``data.folds`` splits a tree
without split folders into subject-independent folds (``data.fold`` = the test fold). A file whose name does not
match is a bad item.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from fer_bench.data.readers.common import image_files, subject_folds
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
    table = pd.DataFrame(rows, columns=["path", "split", "expression", "compound"])
    if data_cfg.subject_regex:
        table = with_subjects(table, data_cfg.subject_regex, problems)
    if data_cfg.folds is not None:
        if split_dirs:
            raise ValueError(f"{root} has split folders ({', '.join(d.name for d in split_dirs)}); data.folds "
                             "makes subject folds of a tree without them: drop data.folds or the split folders")
        if not data_cfg.subject_regex:
            raise ValueError(f"data.folds={data_cfg.folds} needs subject ids: set data.subject_regex (its first "
                             "group, searched in each file name, is the subject)")
        table["split"] = subject_folds(table["subject"], data_cfg.fold, data_cfg.folds)
    return table


def with_subjects(table: pd.DataFrame, regex: str, problems: Problems) -> pd.DataFrame:
    """``table`` with a ``subject`` column from the first group of ``regex`` searched in each file name; a file
    whose name does not match is a problem (named) and left out."""
    try:
        pattern = re.compile(regex)
    except re.error as e:
        raise ValueError(f"data.subject_regex={regex!r} is not a regular expression: {e}") from None
    if pattern.groups < 1:
        raise ValueError(f"data.subject_regex={regex!r} needs a group, e.g. '^(S\\d+)_': its first group is the "
                         "subject id")
    subjects = []
    for path in table["path"]:
        found = pattern.search(Path(path).name)
        subjects.append(found.group(1) if found and found.group(1) else None)
        if subjects[-1] is None:
            problems.add(path, f"file name does not match data.subject_regex={regex!r} (no subject id)")
    table = table.assign(subject=subjects)
    return table[table["subject"].notna()]
