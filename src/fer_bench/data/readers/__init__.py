"""Readers turn an on-disk data set into the records table; one module per format."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fer_bench.data.readers import csv, folder, synthetic
from fer_bench.data.records import DataError, Problems, check_files, normalise

READERS = {
    "folder": folder.read,
    "csv": csv.read,
    "synthetic": synthetic.read,
}


def dataset_root(data_cfg) -> Path:
    """The data set's folder: ``data.root``, or the synthetic cache for the built-in faces."""
    if data_cfg.reader == "synthetic":
        return synthetic.dataset_folder(data_cfg)
    if not data_cfg.root:
        where = f" Request it from: {data_cfg.request}." if data_cfg.request else ""
        raise DataError(
            f"data set '{data_cfg.name}' needs its location: set data.root=/path/to/{data_cfg.name}.{where}")
    root = Path(data_cfg.root).expanduser()
    if not root.is_dir():
        raise DataError(f"data.root={root} for data set '{data_cfg.name}' is not a folder")
    return root


def read_records(data_cfg) -> tuple[pd.DataFrame, Problems]:
    """Read, normalise and check a data set; bad rows raise or are skipped per ``data.on_error``."""
    if data_cfg.reader not in READERS:
        known = ", ".join(READERS)
        raise DataError(f"unknown reader '{data_cfg.reader}' in data card '{data_cfg.name}'; known: {known}")
    problems = Problems(data_cfg.on_error)
    root = dataset_root(data_cfg)
    try:
        table = READERS[data_cfg.reader](root, data_cfg, problems)
    except (FileNotFoundError, ValueError) as e:
        raise DataError(f"data set '{data_cfg.name}': {e}") from None
    records = check_files(normalise(table), problems, str(root))
    problems.settle(data_cfg.name)
    if records.empty:
        raise DataError(f"data set '{data_cfg.name}' at {root} holds no usable images")
    return records.reset_index(drop=True), problems
