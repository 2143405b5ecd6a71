"""``fer-bench inspect data=D``: what fer-bench makes of a data set before any training.

Reads the data set exactly as a run would (reader, label space, splits or folds), with bad items collected
instead of raised, and reports counts per split × class, subjects, rows dropped by the data set's protocol,
bad items with their reasons and the range of image sizes (from the file headers). Everything is written as CSV
to an output folder. The exit status is 1 when a run with the same settings would stop before training.
"""

from __future__ import annotations

import copy
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig
from PIL import Image

from fer_bench.data.datamodule import DataNeeds, FERDataModule
from fer_bench.data.readers import read_records
from fer_bench.data.records import SPLITS, DataError, Problems

SHOWN = 20  # bad items printed; all are in problems.csv


@dataclass
class Inspection:
    """The outcome of reading a data set as a run would; ``stops`` says why that run would stop (empty: it runs)."""

    records: pd.DataFrame | None
    problems: Problems
    class_names: list[str]
    stops: list[str] = field(default_factory=list)


def examine(data_cfg: DictConfig) -> Inspection:
    """Read, label and split ``data_cfg`` like a run, collecting every bad item instead of stopping at them."""
    skipping = copy.deepcopy(data_cfg)
    skipping.on_error = "skip"
    problems = Problems("skip")
    dm = FERDataModule(skipping, DataNeeds(data_cfg.image_size or 32))
    report = Inspection(None, problems, list(dm.class_names))
    try:
        records, _ = read_records(skipping, problems)
        report.records = dm.label_and_split(records, problems)
    except DataError as e:
        report.stops.append(str(e))
        return report
    if problems.items and data_cfg.on_error != "skip":
        report.stops.append(f"{len(problems.items)} bad item(s) with data.on_error={data_cfg.on_error} "
                            "(data.on_error=skip skips and lists them)")
    empty = [s for s in SPLITS if not (report.records["split"] == s).any()]
    if empty:
        report.stops.append(f"no {', '.join(empty)} images after splitting")
    return report


def counts(records: pd.DataFrame, class_names: list[str]) -> pd.DataFrame:
    """Images per split (rows, with a total) and class (columns, in head order, with a total)."""
    table = pd.crosstab(records["split"], records["head"]).reindex(index=list(SPLITS), columns=range(
        len(class_names)), fill_value=0)
    table.columns = class_names
    table.index.name = "split"
    table["total"] = table.sum(axis=1)
    table.loc["total"] = table.sum(axis=0)
    return table


def subjects_line(records: pd.DataFrame) -> str:
    """Subjects per split and how many appear in more than one split."""
    known = records[records["subject"].notna()]
    if known.empty:
        return "subjects: none known (splits are carved per image)"
    per_split = known.groupby("split")["subject"].nunique()
    shared = int((known.groupby("subject")["split"].nunique() > 1).sum())
    parts = ", ".join(f"{s} {int(per_split.get(s, 0))}" for s in SPLITS)
    return f"subjects: {known['subject'].nunique()} ({parts}); in more than one split: {shared}"


def _size(path: str) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def size_line(paths: list[str]) -> str:
    """The range of image widths and heights, read from the headers."""
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        sizes = list(pool.map(_size, paths))
    if not sizes:
        return "image size: no images"
    widths, heights = zip(*sizes, strict=True)
    return (f"image size (width x height): {min(widths)}x{min(heights)} .. {max(widths)}x{max(heights)}, "
            f"{len(set(sizes))} distinct")


def write_report(report: Inspection, out: Path) -> list[str]:
    """Write ``counts.csv``, ``dropped.csv`` and ``problems.csv`` to ``out``; returns the printed lines."""
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    if report.records is not None:
        table = counts(report.records, report.class_names)
        table.to_csv(out / "counts.csv")
        shown_table = table.rename_axis(None).to_string().splitlines()
        lines += ["images per split and class:", *("  " + line for line in shown_table),
                  subjects_line(report.records), size_line(report.records["path"].tolist())]
    dropped = report.problems.dropped_frame()
    dropped.to_csv(out / "dropped.csv", index=False)
    lines.append(f"dropped by the protocol: {int(dropped['count'].sum())} row(s)" + ("" if dropped.empty else ":"))
    lines += [f"  {n:>6}  {reason}" for reason, n in dropped.itertuples(index=False)]
    items = report.problems.frame()
    items.to_csv(out / "problems.csv", index=False)
    shown = f" (first {SHOWN})" if len(items) > SHOWN else ""
    lines.append(f"bad items: {len(items)}{shown}; all in {out / 'problems.csv'}")
    lines += [f"  {where}: {reason}" for where, reason in items.head(SHOWN).itertuples(index=False)]
    if report.stops:
        lines += ["a run with these settings would stop:", *(f"  {s}" for s in report.stops)]
    else:
        lines.append("a run with these settings would start")
    return lines


def inspect(cfg: DictConfig, out: Path) -> int:
    """Print what fer-bench makes of ``cfg.data`` and write the tables to ``out``; 1 if a run would stop."""
    data = cfg.data
    print(f"data set '{data.name}' (reader {data.reader}, root {data.root}); target {data.target} in space "
          f"'{data.space}'")
    report = examine(data)
    print("\n".join(write_report(report, out)))
    return 1 if report.stops else 0
