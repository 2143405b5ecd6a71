"""Train/val/test assignment: keep the data set's own splits, carve what it lacks from train (seeded,
stratified, subject-grouped when subjects are known), and save/restore the id lists of a run."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from fer_bench.data.records import SPLITS, DataError


def _carve(labels: np.ndarray, groups: np.ndarray | None, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of a stratified ``fraction`` of the rows (whole groups when ``groups`` is given)."""
    if groups is not None and len(np.unique(groups)) >= 2:
        n_splits = max(2, int(round(1.0 / fraction)))
        n_splits = min(n_splits, len(np.unique(groups)))
        folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        _, held = next(folds.split(np.zeros(len(labels)), labels, groups))
        mask = np.zeros(len(labels), dtype=bool)
        mask[held] = True
        return mask
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        take = int(round(fraction * len(rows))) if len(rows) > 1 else 0
        mask[rng.permutation(rows)[:take]] = True
    return mask


def assign_splits(records: pd.DataFrame, label: pd.Series, val_fraction: float, test_fraction: float,
                  seed: int) -> pd.Series:
    """Split name per row: the data set's own where given, carved from train where missing. ``val_fraction=0``
    carves no validation split (protocol=faithful trains on the whole train split, as the official scripts)."""
    split = records["split"].copy()
    has_subject = records["subject"].notna().all()
    groups = records["subject"].to_numpy() if has_subject else None
    codes = label.to_numpy()
    if split.isna().all():
        split[:] = "train"
        test = _carve(codes, groups, test_fraction, seed)
        split[test] = "test"
    unknown = set(split.dropna().unique()) - set(SPLITS)
    if unknown or split.isna().any():
        raise DataError(f"split column holds {sorted(map(str, unknown)) or 'empty cells'}; expected train/val/test")
    if val_fraction > 0 and not (split == "val").any():
        train = np.flatnonzero(split.to_numpy() == "train")
        sub_groups = groups[train] if groups is not None else None
        val = _carve(codes[train], sub_groups, val_fraction, seed + 1)
        split.iloc[train[val]] = "val"
    return split


def common_root(paths: list[str]) -> str:
    """The folder split ids are taken relative to: the common folder of all the paths (of one path, its folder)."""
    return os.path.commonpath(paths) if len(paths) > 1 else os.path.dirname(paths[0])


def save_splits(records: pd.DataFrame, split: pd.Series, folder: Path) -> None:
    """Write one ``<split>.txt`` of image paths per split."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in SPLITS:
        paths = records.loc[split == name, "path"]
        (folder / f"{name}.txt").write_text("".join(f"{p}\n" for p in paths))


def load_splits(records: pd.DataFrame, folder: Path) -> pd.Series:
    """Restore a run's saved splits; every saved path must still be in the records."""
    split = pd.Series(pd.NA, index=records.index, dtype="string")
    position = {p: i for i, p in enumerate(records["path"])}
    for name in SPLITS:
        file = folder / f"{name}.txt"
        for line_no, path in enumerate(file.read_text().splitlines(), start=1):
            if path not in position:
                raise DataError(f"{file}:{line_no}: {path} is not in the data set any more")
            split.iloc[position[path]] = name
    return split
