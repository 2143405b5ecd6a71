"""Aff-Wild2 / ABAW (specs/datasets.md §3.9): per-video annotation files
``<root>/<data.abaw.annotations>/<task folder>/{Train_Set,Validation_Set}/<video>.txt`` — a header line, then
line i + 1 for frame i (1-based) — matching the face images ``<root>/<data.variant>/<video>/<i:05d>.jpg``
(``cropped_aligned`` by default, or ``cropped``). Task folder names change by challenge edition: ``data.abaw.*``.

Tasks (``data.abaw.tasks``): EXPR (one label, Neutral … Other; −1 = unannotated), VA (``valence,arousal``; a frame
with either below −1, e.g. the −5 sentinel, has none), AU (12 comma-separated 0/1 for AUs 1 2 4 6 7 10 12 15 23 24
25 26; −1 = invalid, masked). Several tasks merge per frame, each label missing where its task has none. Sentinel
lines and frames without a face image are dropped and counted. ``_left``/``_right`` videos stay distinct videos
(``subject`` = video, so a carved val never splits one). Train_Set → train, Validation_Set → test.

Multi-task challenge (``data.abaw.tasks=[MTL]``; 3rd/4th ABAW MTL, s-Aff-Wild2): one CSV per set,
``<root>/<data.abaw.annotations>/<data.abaw.mtl>/{train_set,validation_set}.txt`` with the header
``image,valence,arousal,expression,AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26`` and rows such as
``10-60-1280x720/00001.jpg,0.5,0.2,4,0,0,...`` (image relative to ``<data.variant>``; the same sentinels: VA −5,
expression −1, AU −1). Its rows become the same records as the per-task files: each label missing where its
sentinel says so, and a row without any label dropped.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

from fer_bench.data.readers.common import lines, native_label, read_table
from fer_bench.data.records import Problems
from fer_bench.labels import ABAW12_AUS, NATIVE_TABLES

SETS = {"Train_Set": "train", "Validation_Set": "test"}
MTL_SETS = {"train_set.txt": "train", "validation_set.txt": "test"}
MTL_COLUMNS = ("image", "valence", "arousal", "expression", *(f"AU{au}" for au in ABAW12_AUS))
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


def _frames_with_images(folder: str, cache: dict[str, set[str]]) -> set[str]:
    """The file names in one video's image folder (listed once per video)."""
    if folder not in cache:
        cache[folder] = set(os.listdir(folder)) if os.path.isdir(folder) else set()
    return cache[folder]


def _sentinel(task: str, problems: Problems) -> None:
    problems.drop(f"Aff-Wild2 {task}: sentinel (no label)")


def _mtl_frames(root: Path, images: Path, options, problems: Problems) -> dict[tuple[str, str], dict]:
    """Frames of the multi-task challenge files, keyed by (video, image name)."""
    folder = root / options.annotations / options.mtl
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} not found (set data.abaw.annotations / data.abaw.mtl)")
    frames: dict[tuple[str, str], dict] = {}
    for name, split in MTL_SETS.items():
        file = folder / name
        for i, row in enumerate(read_table(file, MTL_COLUMNS).to_dict("records")):
            where, image = f"{file}:{i + 2}", Path(row["image"])
            try:
                if len(image.parts) != 2:
                    raise ValueError(f"image {row['image']!r} is not <video>/<frame>.jpg")
                labels = {"EXPR": _expr([row["expression"]]), "VA": _va([row["valence"], row["arousal"]]),
                          "AU": _au([row[f"AU{au}"] for au in ABAW12_AUS])}
            except ValueError as e:
                problems.add(where, str(e))
                continue
            key = (image.parts[0], image.name)
            if key in frames:
                problems.add(where, f"image {row['image']} is listed again (first at {frames[key]['source']})")
                continue
            frame = {"path": str(images / image), "subject": image.parts[0], "split": split, "domain": "affwild2",
                     "source": where}
            for task, label in labels.items():
                if label is None:
                    _sentinel(task, problems)
                else:
                    frame.update(label)
            if any(label is not None for label in labels.values()):
                frames[key] = frame
    return frames


def _task_frames(root: Path, images: Path, options, problems: Problems) -> dict[tuple[str, int], dict]:
    """Frames of the per-video files of each task, merged, keyed by (video, 0-based frame index)."""
    frames: dict[tuple[str, int], dict] = {}
    for task in options.tasks:
        key, parse = TASKS[task]
        task_dir = root / options.annotations / getattr(options, key)
        if not task_dir.is_dir():
            raise FileNotFoundError(f"{task_dir} not found (set data.abaw.annotations / data.abaw.{key})")
        for set_name, split in SETS.items():
            for file in sorted((task_dir / set_name).glob("*.txt")):
                video = file.stem
                video_dir = os.path.join(images, video)  # strings, not Path objects: millions of frames
                for number, fields in lines(file, skip_header=True):
                    where = f"{file}:{number}"
                    try:
                        label = parse(fields)
                    except ValueError as e:
                        problems.add(where, str(e))
                        continue
                    if label is None:
                        _sentinel(task, problems)
                        continue
                    frame = frames.get((video, number - 1))
                    if frame is None:
                        frame = frames[(video, number - 1)] = {
                            "path": f"{video_dir}{os.sep}{number - 1:05d}.jpg", "subject": video, "split": split,
                            "domain": "affwild2", "source": where}
                    if frame["split"] != split:
                        problems.add(where, f"video {video} is in {set_name} here but not in the other tasks")
                        continue
                    frame.update(label)
    return frames


def read(root: Path, data_cfg, problems: Problems) -> pd.DataFrame:
    options = data_cfg.abaw
    tasks = list(options.tasks)
    if tasks == ["MTL"]:
        read_frames = _mtl_frames
    elif not tasks or any(t not in TASKS for t in tasks):
        raise ValueError(f"data.abaw.tasks={tasks}: choose from {', '.join(TASKS)}, or [MTL] alone")
    else:
        read_frames = _task_frames
    images = root / (data_cfg.variant or "cropped_aligned")
    frames = read_frames(root, images, options, problems)
    listed: dict[str, set[str]] = {}
    rows = []
    for key in sorted(frames):  # by video, then frame number
        frame = frames[key]
        folder, _, name = frame["path"].rpartition(os.sep)
        if name in _frames_with_images(folder, listed):
            rows.append(frame)
        else:
            problems.drop(NO_IMAGE)
    return pd.DataFrame(rows)
