"""A CSV file with one row per image: a path column, a label column (class name or canonical id) and optional
``valence, arousal, au*, intensity, subject, split, domain`` columns. Paths are relative to ``data.root``.
Columns named in ``data.group_columns`` (e.g. ``age, gender, race`` of the FG 2024 fair affect-analysis
protocol's annotation files ``name, expression, age, gender, race``) are kept as text for per-group results."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fer_bench.data.records import FLOAT_COLUMNS, Problems
from fer_bench.labels import COMPOUNDS, EXPRESSIONS, compound_id, expression_id

OPTIONAL_COLUMNS = ("subject", "split", "domain", *FLOAT_COLUMNS)


def _parse_label(cell, parse_name, size: int) -> int | None:
    if pd.isna(cell) or str(cell).strip() == "":
        return None
    text = str(cell).strip()
    if text.lstrip("-").isdigit():
        value = int(text)
        if not 0 <= value < size:
            raise KeyError(f"label id {value} outside 0..{size - 1}")
        return value
    return parse_name(text)


def read(root: Path, data_cfg, problems: Problems, group_columns: list[str] | None = None) -> pd.DataFrame:
    """Records of ``root/<data.csv.file>``; ``group_columns`` defaults to ``data.group_columns``."""
    options = data_cfg.csv
    file = root / options.file
    if not file.is_file():
        raise FileNotFoundError(f"label file {file} not found (set data.csv.file)")
    table = pd.read_csv(file, dtype=str, keep_default_na=False)
    if group_columns is None:
        group_columns = list(data_cfg.get("group_columns") or ())
    for col in (options.path_column, options.label_column, *group_columns):
        if col not in table.columns:
            raise ValueError(f"{file}: no column '{col}'; columns are {', '.join(table.columns)}")
    rows = []
    label_col = options.label_column
    for i, row in table.iterrows():
        line = f"{file}:{i + 2}"  # header is line 1
        record = {"path": str(root / row[options.path_column]), "source": line}
        try:
            if label_col == "compound":
                record["compound"] = _parse_label(row[label_col], compound_id, len(COMPOUNDS))
            else:
                record["expression"] = _parse_label(row[label_col], expression_id, len(EXPRESSIONS))
            if label_col != "compound" and "compound" in table.columns:
                record["compound"] = _parse_label(row["compound"], compound_id, len(COMPOUNDS))
            for col in OPTIONAL_COLUMNS:
                if col in table.columns and row[col] != "":
                    record[col] = float(row[col]) if col in FLOAT_COLUMNS else row[col]
            record.update({col: row[col] if row[col] != "" else pd.NA for col in group_columns})
        except (KeyError, ValueError) as e:
            problems.add(line, str(e).strip("'\""))
            continue
        rows.append(record)
    return pd.DataFrame(rows)
