"""SFEW 2.0 (Dhall et al., EmotiW): per-split class folders with the classes ``Angry, Disgust, Fear, Happy, Neutral,
Sad, Surprise`` (mapped through the explicit SFEW table, never the folder order), in either release:

- frames: ``<root>/Train/<Class>/``, ``<root>/Val/<Class>/``;
- aligned faces: ``<root>/Train/Train_Aligned_Faces/<Class>/``, ``<root>/Val/Val_Aligned_Faces/<Class>/`` (or the
  ``<Split>_Aligned_Faces/`` folders directly under ``<root>``).

``data.variant``: ``aligned`` or ``original`` (frames); empty = the aligned faces where a split has them, else the
frames. Test labels are withheld: ``Test/`` images are counted and left out. Train → train, Val → test (papers
report Val); val is carved from train.
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
SPLITS = {"Train": "train", "Val": "test"}
VARIANTS = ("", "aligned", "original")
UNLABELLED = "SFEW: Test image (labels withheld)"


def _label(folder_name: str) -> dict[str, int] | None:
    canonical = CLASSES.get(folder_name.lower())
    return None if canonical is None else {"expression": canonical}


def _subdirs(folder: Path | None) -> dict[str, Path]:
    """Sub-folders by lower-case name."""
    return {d.name.lower(): d for d in folder.iterdir() if d.is_dir()} if folder is not None else {}


def split_folder(root: Path, split: str, variant: str) -> Path | None:
    """The folder holding ``split``'s class folders (or, for Test, its images) in the chosen release."""
    plain = _subdirs(root).get(split.lower())
    aligned_name = f"{split}_aligned_faces".lower()
    aligned = _subdirs(plain).get(aligned_name) or _subdirs(root).get(aligned_name)
    if variant == "aligned":
        return aligned
    if variant == "original":
        return plain
    return aligned or plain


def read(root: Path, data_cfg, problems: Problems) -> pd.DataFrame:
    variant = data_cfg.variant
    if variant not in VARIANTS:
        raise ValueError(f"data.variant={variant!r}: SFEW releases are aligned, original (frames) or empty (aligned "
                         "where present)")
    rows = []
    for name, split in SPLITS.items():
        folder = split_folder(root, name, variant)
        if folder is None:
            raise FileNotFoundError(f"no {name} folder under {root} for data.variant={variant!r} (SFEW 2.0: "
                                    f"{name}/<Class>/ or {name}/{name}_Aligned_Faces/<Class>/)")
        classes = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.lower().endswith("_aligned_faces"))
        for class_dir in classes:
            rows.extend(class_rows(class_dir, split, problems, _label))
    test = split_folder(root, "Test", variant)
    if test is not None:
        frames = [p for p in images_in(test) if not any(
            part.lower().endswith("_aligned_faces") for part in p.relative_to(test).parts[:-1])]
        problems.drop(UNLABELLED, len(frames))
    return pd.DataFrame(rows, columns=["path", "split", "expression"]).assign(domain="sfew")
