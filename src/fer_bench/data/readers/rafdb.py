"""RAF-DB basic and compound (specs/datasets.md §3.1–3.2).

Layout: ``<root>/basic/EmoLabel/list_patition_label.txt`` (sic) with lines ``train_00001.jpg 5`` — labels are
1-based, the split is the name's prefix (train/test) — and the images ``basic/Image/aligned/<stem>_aligned.jpg``
(``data.variant=aligned``, the default) or ``basic/Image/original/<name>`` (``data.variant=original``); any other
variant names a folder under ``Image/`` holding ``<stem>_aligned.jpg`` files (a re-aligned copy). The compound set
mirrors it under ``compound/``. ``data.root`` may also be the ``basic`` or ``compound`` folder itself.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fer_bench.data.readers.common import lines, native_label
from fer_bench.data.records import Problems
from fer_bench.labels import NATIVE_TABLES, NativeTable

LIST_FILE = Path("EmoLabel") / "list_patition_label.txt"


def _read(root: Path, data_cfg, problems: Problems, subset: str, table: NativeTable, column: str) -> pd.DataFrame:
    folder = root if (root / LIST_FILE).is_file() else root / subset
    list_file = folder / LIST_FILE
    if not list_file.is_file():
        raise FileNotFoundError(f"label list {root / subset / LIST_FILE} not found")
    variant = data_cfg.variant or "aligned"
    rows = []
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
        rows.append({"path": str(folder / "Image" / variant / file), column: canonical, "split": split,
                     "domain": table.name, "source": where})
    return pd.DataFrame(rows, columns=["path", column, "split", "domain", "source"])


def read_basic(root: Path, data_cfg, problems: Problems) -> pd.DataFrame:
    """RAF-DB basic: 7 expressions."""
    return _read(root, data_cfg, problems, "basic", NATIVE_TABLES["rafdb"], "expression")


def read_compound(root: Path, data_cfg, problems: Problems) -> pd.DataFrame:
    """RAF-DB compound: 11 compound classes (canonical compound ids)."""
    return _read(root, data_cfg, problems, "compound", NATIVE_TABLES["rafdb_compound"], "compound")
