"""CFEE, Compound Facial Expressions of Emotion (Du, Tao & Martinez, PNAS 2014; the CFEE_Database_230 release).

Images anywhere under ``<root>`` (the release keeps them in group folders such as ``01-04/Images1/``) named
``<class id:2>_<subject:3>_<index>.jpg``, e.g. ``09_110_2555.jpg``: the fields are split on ``_``, as the authors'
code reads ``name[:2]`` and ``name[3:6]``. Class ids and names come from a table with columns ``id,name``
(``data.cfee.classes``, default ``<root>/classes.csv``): the ``summary`` sheet of
``AU_annotation_all_subjects.xls`` exported once (fer-bench reads no .xls and never guesses the class order).
Names map by name: neutral → expression 0, the six basic names (happy, sad, fearful, angry, surprised, disgusted)
→ their expression ids, compound names → compound ids.

The release holds class ids the sheet does not list (e.g. ``23_178_6632.jpg``). Their images are skipped and
counted per id (``dropped.csv`` and the log, with a file of each id as an example); to use them, add rows for
those ids to the class table. No official split: subject-independent folds (``data.folds``, ``data.fold``) on
sorted subject ids.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd

from fer_bench.data.readers.common import images_in, read_table, subject_folds
from fer_bench.data.readers.folder import label_columns
from fer_bench.data.records import Problems

log = logging.getLogger(__name__)
FILE_NAME = re.compile(r"(\d{2})_(\d{3})_(\d+)")
BAD_NAME = "file name is not <class id:2>_<subject:3>_<index> (CFEE_Database_230, e.g. 09_110_2555.jpg)"


def unmapped(code: str, table: Path, example: str) -> str:
    """The dropped-row reason of the images of a class id the class table lacks."""
    return f"CFEE: class id {code} is not in {table} (add a row '{int(code)},<name>' to use it; e.g. {example})"


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
    class_file = root / data_cfg.cfee.classes
    if not class_file.is_file():
        raise FileNotFoundError(f"{class_file} not found: export the class ids and names of the 'summary' sheet of "
                                "AU_annotation_all_subjects.xls as a CSV with columns id,name (data.cfee.classes)")
    classes = _classes(class_file, problems)
    rows, unknown = [], {}
    for image in images_in(root):
        match = FILE_NAME.fullmatch(image.stem)
        if match is None:
            problems.add(str(image), BAD_NAME)
            continue
        code, subject = match.group(1), match.group(2)
        if code in classes:
            rows.append({"path": str(image), **classes[code], "subject": subject})
        else:
            unknown.setdefault(code, []).append(image)
    for code, images in sorted(unknown.items()):
        reason = unmapped(code, class_file, images[0].relative_to(root).as_posix())
        problems.drop(reason, len(images))
        log.warning("skipped %d image(s): %s", len(images), reason)
    table = pd.DataFrame(rows, columns=["path", "expression", "compound", "subject"])
    return table.assign(split=subject_folds(table["subject"], data_cfg.fold, data_cfg.folds), domain="cfee")
