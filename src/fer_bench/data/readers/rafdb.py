"""RAF-DB basic and compound (docs/datasets.md §3.1–3.2).

Layout: ``<root>/basic/EmoLabel/list_patition_label.txt`` (sic) with lines ``train_00001.jpg 5`` — labels are
1-based, the split is the name's prefix (train/test) — and the images ``basic/Image/aligned/<stem>_aligned.jpg``
(``data.variant=aligned``, the default) or ``basic/Image/original/<name>`` (``data.variant=original``); any other
variant names a folder under ``Image/`` holding ``<stem>_aligned.jpg`` files (a re-aligned copy). The compound set
mirrors it under ``compound/``. ``data.root`` may also be the ``basic`` or ``compound`` folder itself.

Where the manual annotation is unpacked (``Annotation/manual/<stem>_manu_attri.txt``: five landmark lines ``x y``,
then one line each for gender, race and age group, as the data set's README describes), every image gets
``gender`` (0 male, 1 female, 2 unsure), ``race`` (0 Caucasian, 1 African-American, 2 Asian) and ``age_group``
(0: 0-3, 1: 4-19, 2: 20-39, 3: 40-69, 4: 70+) as text, for per-group results.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from fer_bench.data.readers.common import lines, native_label
from fer_bench.data.records import Problems
from fer_bench.labels import NATIVE_TABLES, NativeTable

LIST_FILE = Path("EmoLabel") / "list_patition_label.txt"
MANUAL = Path("Annotation") / "manual"
ATTRIBUTES = (("gender", {0: "male", 1: "female", 2: "unsure"}),
              ("race", {0: "Caucasian", 1: "African-American", 2: "Asian"}),
              ("age_group", {0: "0-3", 1: "4-19", 2: "20-39", 3: "40-69", 4: "70+"}))

log = logging.getLogger(__name__)


def manual_attributes(file: Path) -> dict[str, str]:
    """Gender, race and age group of one ``<stem>_manu_attri.txt`` (the three lines after five landmarks)."""
    rows = list(lines(file))
    if len(rows) != 5 + len(ATTRIBUTES):
        raise ValueError(f"{file}: expected 5 landmark lines, then gender, race and age group; got {len(rows)} lines")
    values = {}
    for (number, fields), (column, codes) in zip(rows[5:], ATTRIBUTES, strict=True):
        if len(fields) != 1 or not fields[0].isdigit() or int(fields[0]) not in codes:
            raise ValueError(f"{file}:{number}: {column} {' '.join(fields)!r} is not one of {sorted(codes)}")
        values[column] = codes[int(fields[0])]
    return values


def _read(root: Path, data_cfg, problems: Problems, subset: str, table: NativeTable, column: str) -> pd.DataFrame:
    folder = root if (root / LIST_FILE).is_file() else root / subset
    list_file = folder / LIST_FILE
    if not list_file.is_file():
        raise FileNotFoundError(f"label list {root / subset / LIST_FILE} not found")
    variant = data_cfg.variant or "aligned"
    manual = folder / MANUAL if (folder / MANUAL).is_dir() else None
    rows, unannotated = [], []
    for number, fields in lines(list_file):
        where = f"{list_file}:{number}"
        if len(fields) != 2:
            problems.add(where, f"expected '<image> <label>', got {len(fields)} fields")
            continue
        name, label = fields
        split = name.split("_")[0]
        if split not in ("train", "test"):
            problems.add(where, f"image name {name!r} starts with neither train_ nor test_")
            continue
        try:
            canonical = native_label(label, table, base=1)
        except ValueError as e:
            problems.add(where, str(e))
            continue
        file = name if variant == "original" else f"{Path(name).stem}_aligned.jpg"
        row = {"path": str(folder / "Image" / variant / file), column: canonical, "split": split,
               "domain": table.name, "source": where}
        if manual is not None:
            attributes = manual / f"{Path(name).stem}_manu_attri.txt"
            if not attributes.is_file():
                unannotated.append(attributes)
            else:
                try:
                    row |= manual_attributes(attributes)
                except ValueError as e:
                    problems.add(where, str(e))
                    continue
        rows.append(row)
    if unannotated:
        log.warning("RAF-DB: %d image(s) have no manual annotation (gender, race, age group left empty), e.g. %s",
                    len(unannotated), unannotated[0])
    columns = ["path", column, "split", "domain", "source"] + ([c for c, _ in ATTRIBUTES] if manual else [])
    return pd.DataFrame(rows, columns=columns)


def read_basic(root: Path, data_cfg, problems: Problems) -> pd.DataFrame:
    """RAF-DB basic: 7 expressions."""
    return _read(root, data_cfg, problems, "basic", NATIVE_TABLES["rafdb"], "expression")


def read_compound(root: Path, data_cfg, problems: Problems) -> pd.DataFrame:
    """RAF-DB compound: 11 compound classes (canonical compound ids)."""
    return _read(root, data_cfg, problems, "compound", NATIVE_TABLES["rafdb_compound"], "compound")
