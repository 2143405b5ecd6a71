"""SFEW 2.0 (specs/datasets.md §3.6): per-split class folders ``<root>/Train/<Class>/`` and ``<root>/Val/<Class>/``
with the classes ``Angry, Disgust, Fear, Happy, Neutral, Sad, Surprise`` (mapped through the explicit SFEW table,
never the folder order). Test labels are withheld: ``Test/`` images are counted and left out. Train → train,
Val → test (papers report Val); val is carved from train.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fer_bench.data.readers.common import images_in
from fer_bench.data.readers.folder import class_rows
from fer_bench.data.records import Problems
from fer_bench.labels import NATIVE_TABLES

TABLE = NATIVE_TABLES["sfew"]
CLASSES = {name.lower(): canonical for name, canonical in zip(TABLE.native_names, TABLE.to_canonical, strict=True)}
SPLITS = {"train": "train", "val": "test"}
UNLABELLED = "SFEW: Test image (labels withheld)"


def _label(folder_name: str) -> dict[str, int] | None:
    canonical = CLASSES.get(folder_name.lower())
    return None if canonical is None else {"expression": canonical}


def read(root: Path, data_cfg, problems: Problems) -> pd.DataFrame:
    folders = {d.name.lower(): d for d in root.iterdir() if d.is_dir()}
    rows = []
    for name, split in SPLITS.items():
        if name not in folders:
            raise FileNotFoundError(f"no {name.capitalize()}/ folder under {root} (SFEW 2.0: Train/<Class>/, "
                                    "Val/<Class>/)")
        for class_dir in sorted(d for d in folders[name].iterdir() if d.is_dir()):
            rows.extend(class_rows(class_dir, split, problems, _label))
    if "test" in folders:
        problems.drop(UNLABELLED, len(images_in(folders["test"])))
    return pd.DataFrame(rows, columns=["path", "split", "expression"]).assign(domain="sfew")
