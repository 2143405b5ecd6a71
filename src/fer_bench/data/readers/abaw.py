"""Aff-Wild2 / ABAW (specs/datasets.md §3.9): per-video annotation files
``<root>/<data.abaw.annotations>/<task folder>/{Train_Set,Validation_Set}/<video>.txt`` — a header line, then
line i + 1 for frame i (1-based) — matching the face images ``<root>/<data.variant>/<video>/<i:05d>.jpg``
(``cropped_aligned`` by default, or ``cropped``). Task folder names change by challenge edition: ``data.abaw.*``.

Tasks (``data.abaw.tasks``): EXPR (one label, Neutral … Other; −1 = unannotated), VA (``valence,arousal``; a frame
with either below −1, e.g. the −5 sentinel, has none), AU (12 comma-separated 0/1 for AUs 1 2 4 6 7 10 12 15 23 24
25 26; −1 = invalid, masked). Several tasks merge per frame, each label missing where its task has none. Sentinel
lines and frames without a face image are dropped and counted. ``_left``/``_right`` videos stay distinct videos
(``subject`` = video, so a carved val never splits one). Train_Set → train, Validation_Set → test.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from fer_bench.data.readers.common import lines, native_label
from fer_bench.data.records import Problems
from fer_bench.labels import ABAW12_AUS, NATIVE_TABLES

SETS = {"Train_Set": "train", "Validation_Set": "test"}
NO_IMAGE = "Aff-Wild2: frame without a face image"


def _expr(fields: list[str]) -> dict | None:
    if len(fields) != 1:
        raise ValueError(f"expected one expression label, got {len(fields)} fields")
    if fields[0] == "-1":
        return None
    return {"expression": native_label(fields[0], NATIVE_TABLES["affwild2_expr"])}


def _va(fields: list[str]) -> dict | None:
    if len(fields) != 2:
        raise ValueError(f"expected valence,arousal, got {len(fields)} fields")
    valence, arousal = float(fields[0]), float(fields[1])
    if valence < -1 or arousal < -1:
        return None
    if valence > 1 or arousal > 1:
        raise ValueError(f"valence/arousal {fields[0]},{fields[1]} above 1")
    return {"valence": valence, "arousal": arousal}


def _au(fields: list[str]) -> dict | None:
    if len(fields) != len(ABAW12_AUS):
        raise ValueError(f"expected {len(ABAW12_AUS)} AU values, got {len(fields)} fields")
    values = [float(v) for v in fields]
    if any(v not in (0, 1, -1) for v in values):
        raise ValueError(f"AU values must be 0, 1 or -1: {','.join(fields)}")
    if all(v == -1 for v in values):
        return None
    return {f"au{au}": math.nan if v == -1 else v for au, v in zip(ABAW12_AUS, values, strict=True)}


TASKS = {"EXPR": ("expr", _expr), "VA": ("va", _va), "AU": ("au", _au)}


def _frames_with_images(folder: Path, cache: dict[Path, set[str]]) -> set[str]:
    if folder not in cache:
        cache[folder] = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    return cache[folder]


def read(root: Path, data_cfg, problems: Problems) -> pd.DataFrame:
    options = data_cfg.abaw
    unknown = [t for t in options.tasks if t not in TASKS]
    if unknown or not options.tasks:
        raise ValueError(f"data.abaw.tasks={list(options.tasks)}: choose from {', '.join(TASKS)}")
    images = root / (data_cfg.variant or "cropped_aligned")
    frames: dict[tuple[str, int], dict] = {}
    for task in options.tasks:
        key, parse = TASKS[task]
        task_dir = root / options.annotations / getattr(options, key)
        if not task_dir.is_dir():
            raise FileNotFoundError(f"{task_dir} not found (set data.abaw.annotations / data.abaw.{key})")
        for set_name, split in SETS.items():
            for file in sorted((task_dir / set_name).glob("*.txt")):
                video = file.stem
                for number, fields in lines(file, skip_header=True):
                    where = f"{file}:{number}"
                    try:
                        label = parse(fields)
                    except ValueError as e:
                        problems.add(where, str(e))
                        continue
                    if label is None:
                        problems.drop(f"Aff-Wild2 {task}: sentinel (no label)")
                        continue
                    frame = frames.setdefault((video, number - 1), {
                        "path": str(images / video / f"{number - 1:05d}.jpg"), "subject": video, "split": split,
                        "domain": "affwild2", "source": where})
                    if frame["split"] != split:
                        problems.add(where, f"video {video} is in {set_name} here but not in the other tasks")
                        continue
                    frame.update(label)
    listed: dict[Path, set[str]] = {}
    rows = []
    for key in sorted(frames):  # by video, then frame number
        frame = frames[key]
        path = Path(frame["path"])
        if path.name in _frames_with_images(path.parent, listed):
            rows.append(frame)
        else:
            problems.drop(NO_IMAGE)
    return pd.DataFrame(rows)
