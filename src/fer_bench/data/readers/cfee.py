"""CFEE (specs/datasets.md §3.11): images anywhere under ``<root>`` whose file name starts with a 2-digit class id
and a 3-digit subject id (characters 1–2 and 3–5), and ``<root>/classes.csv`` with columns ``id,name``: the class
ids and names of the ``summary`` sheet of ``AU_annotation_all_subjects.xls``, exported once (fer-bench reads no
.xls, and never guesses the class order). Names map by name: neutral → expression 0, the six basic names (happy,
sad, fearful, angry, surprised, disgusted) → their expression ids, compound names → compound ids. No official
split: subject-independent folds (``data.folds``, ``data.fold``) on sorted subject ids.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fer_bench.data.readers.common import images_in, read_table, subject_folds
from fer_bench.data.readers.folder import label_columns
from fer_bench.data.records import Problems

CLASS_FILE = "classes.csv"


def _classes(file: Path, problems: Problems) -> dict[str, dict[str, int]]:
    """Two-digit class id → label columns, from the exported summary sheet."""
    classes = {}
    for i, row in enumerate(read_table(file, ("id", "name")).to_dict("records")):
        labels = label_columns(row["name"])
        if not row["id"].isdigit() or labels is None:
            problems.add(f"{file}:{i + 2}", f"class {row['id']!r} {row['name']!r} is not a numeric id with a known "
                                            "expression or compound name")
            continue
        classes[f"{int(row['id']):02d}"] = labels
    return classes


def read(root: Path, data_cfg, problems: Problems) -> pd.DataFrame:
    class_file = root / CLASS_FILE
    if not class_file.is_file():
        raise FileNotFoundError(f"{class_file} not found: export the class ids and names of the 'summary' sheet of "
                                "AU_annotation_all_subjects.xls as a CSV with columns id,name")
    classes = _classes(class_file, problems)
    rows = []
    for image in images_in(root):
        code, subject = image.name[:2], image.name[2:5]
        if not (code.isdigit() and subject.isdigit()):
            problems.add(str(image), "file name does not start with a 2-digit class id and a 3-digit subject id")
        elif code not in classes:
            problems.add(str(image), f"class id {code} is not in {class_file}")
        else:
            rows.append({"path": str(image), **classes[code], "subject": subject})
    table = pd.DataFrame(rows, columns=["path", "expression", "compound", "subject"])
    return table.assign(split=subject_folds(table["subject"], data_cfg.fold, data_cfg.folds), domain="cfee")
