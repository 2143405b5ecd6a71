"""Readers turn an on-disk data set into the records table; one module per format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fer_bench.data.checked import check_files
from fer_bench.data.readers import (
    abaw,
    affectnet,
    cfee,
    ckplus,
    csv,
    expw,
    fer2013,
    ferplus,
    folder,
    rafdb,
    sfew,
    synthetic,
)
from fer_bench.data.records import DataError, Problems, normalise

READERS = {
    "folder": folder.read,
    "csv": csv.read,
    "synthetic": synthetic.read,
    "rafdb": rafdb.read_basic,
    "rafdb_compound": rafdb.read_compound,
    "affectnet": affectnet.read_csv,
    "affectnet_npy": affectnet.read_npy,
    "ferplus": ferplus.read,
    "fer2013": fer2013.read,
    "ckplus": ckplus.read,
    "sfew": sfew.read,
    "expw": expw.read,
    "abaw": abaw.read,
    "cfee": cfee.read,
}
# Readers that decode images once into data.cache_dir; prepare() fills that cache on one process first.
CACHED_READERS = frozenset({"fer2013", "affectnet", "expw"})


def dataset_root(data_cfg) -> Path:
    """The data set's folder: ``data.root``, or the synthetic cache for the built-in faces."""
    if data_cfg.reader == "synthetic":
        return synthetic.dataset_folder(data_cfg)
    where = f" Request it from: {data_cfg.request}." if data_cfg.request else ""
    if not data_cfg.root:
        raise DataError(
            f"data set '{data_cfg.name}' needs its location: set data.root=/path/to/{data_cfg.name}.{where}")
    root = Path(data_cfg.root).expanduser()
    if not root.is_dir():
        raise DataError(f"data.root={root} for data set '{data_cfg.name}' is not a folder.{where}")
    return root


def prepare(data_cfg, check: bool = False) -> None:
    """Once per run, on one process per node: generate the synthetic cache or decode a cached reader's images.

    ``check``: also check the images (``data.check``, data/checked.py), so that the other ranks, reading the
    records afterwards, find every verdict stored and only stat the files. Bad input is left for those reads to
    report, identically on every rank.
    """
    root = dataset_root(data_cfg)
    if check:
        found = Problems("skip")
        try:
            check_files(drop_duplicates(normalise(_read(root, data_cfg, found)), found), found, root, data_cfg)
        except DataError:
            return
    elif data_cfg.reader in CACHED_READERS:
        _read(root, data_cfg, Problems("skip"))


def _read(root: Path, data_cfg, problems: Problems) -> pd.DataFrame:
    try:
        return READERS[data_cfg.reader](root, data_cfg, problems)
    except (FileNotFoundError, ValueError) as e:
        # Bad items found before the error (e.g. rejected file names that leave too few subjects for the folds)
        # come first: they are usually its cause.
        first = f"{problems.listing(data_cfg.name)}\nthen: " if problems.items else ""
        raise DataError(f"{first}data set '{data_cfg.name}': {e}") from None


def drop_duplicates(records: pd.DataFrame, problems: Problems) -> pd.DataFrame:
    """Flag every row that lists an image already listed; keeps the first."""
    repeated = records["path"].duplicated()
    if repeated.any():
        where = records["source"].fillna(records["path"]) if "source" in records else records["path"]
        first = dict(zip(records["path"][~repeated], where[~repeated], strict=True))
        for i in np.flatnonzero(repeated):
            path = records["path"].iloc[i]
            problems.add(str(where.iloc[i]), f"image {path} is listed again (first at {first[path]})")
    return records[~repeated.to_numpy()]


def read_records(data_cfg, problems: Problems | None = None) -> tuple[pd.DataFrame, Problems]:
    """Read, normalise and check a data set; bad rows raise or are skipped per ``data.on_error``.

    ``problems`` (default: a new collector) receives the bad items and dropped rows, also when reading fails.
    """
    if data_cfg.reader not in READERS:
        known = ", ".join(READERS)
        raise DataError(f"unknown reader '{data_cfg.reader}' in data card '{data_cfg.name}'; known: {known}")
    problems = problems if problems is not None else Problems(data_cfg.on_error)
    root = dataset_root(data_cfg)
    group_columns = tuple(data_cfg.get("group_columns") or ())
    table = _read(root, data_cfg, problems)
    absent = [c for c in group_columns if c not in table]
    if absent:
        raise DataError(f"data.group_columns={list(group_columns)}: data set '{data_cfg.name}' has no column "
                        f"{', '.join(absent)}; its columns are {', '.join(table.columns)}")
    records = check_files(drop_duplicates(normalise(table, group_columns), problems), problems, root, data_cfg)
    problems.settle(data_cfg.name)
    problems.log_dropped(data_cfg.name)
    if records.empty:
        raise DataError(f"data set '{data_cfg.name}' at {root} holds no usable images")
    return records.reset_index(drop=True), problems
