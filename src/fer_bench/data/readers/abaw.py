"""Aff-Wild2 / ABAW (docs/datasets.md §3.9): per-video annotation files
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
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from numpy.dtypes import StringDType

from fer_bench.data.readers.common import native_label, read_table
from fer_bench.data.readers.plain_lines import plain_lines
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


def _expr_plain(tokens: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``_expr`` on many plain lines at once: (sentinel mask, labelled mask, labels); lines in neither mask
    (bad ones) take ``_expr`` for their message."""
    table = np.asarray(NATIVE_TABLES["affwild2_expr"].to_canonical, dtype=float)
    value = values[:, 0]
    sentinel = tokens[:, 0] == b"-1"
    labelled = ~sentinel & (value >= 0) & (value <= len(table) - 1) & (value == np.floor(value))
    return sentinel, labelled, table[np.where(labelled, value, 0).astype(int)][:, None]


def _va_plain(tokens: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``_va`` on many plain lines at once (see ``_expr_plain``)."""
    sentinel = (values < -1).any(axis=1)
    return sentinel, ~sentinel & (values <= 1).all(axis=1), values


def _au_plain(tokens: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``_au`` on many plain lines at once (see ``_expr_plain``)."""
    valid = np.isin(values, (0, 1, -1)).all(axis=1)
    unset = values == -1
    sentinel = valid & unset.all(axis=1)
    return sentinel, valid & ~sentinel, np.where(unset, np.nan, values)


class Task(NamedTuple):
    key: str  # the data.abaw option naming its folder
    parse: Callable[[list[str]], dict | None]  # one line's fields
    plain: Callable  # many plain lines' tokens and values
    columns: tuple[str, ...]


TASKS = {"EXPR": Task("expr", _expr, _expr_plain, ("expression",)),
         "VA": Task("va", _va, _va_plain, ("valence", "arousal")),
         "AU": Task("au", _au, _au_plain, tuple(f"au{au}" for au in ABAW12_AUS))}


def _sentinel(task: str, problems: Problems, n: int = 1) -> None:
    problems.drop(f"Aff-Wild2 {task}: sentinel (no label)", n)


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


def _file_labels(file: str, task: Task, problems: list, fid: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(line numbers, labels) of the labelled lines of one per-video file, and its count of sentinel lines; bad
    lines go to ``problems`` as (file id, line number, reason)."""
    found = plain_lines(file, len(task.columns))
    sentinel, labelled, labels = task.plain(found.tokens, found.values)
    undecided = [(int(n), [t.decode() for t in fields]) for n, fields in
                 zip(found.numbers[~sentinel & ~labelled], found.tokens[~sentinel & ~labelled], strict=True)]
    numbers, rows, sentinels = [found.numbers[labelled]], [labels[labelled]], int(sentinel.sum())
    for number, fields in undecided + [(n, text.replace(",", " ").split()) for n, text in found.others]:
        try:
            label = task.parse(fields)
        except ValueError as e:
            problems.append((fid, number, str(e)))
            continue
        if label is None:
            sentinels += 1
        else:
            numbers.append(np.array([number]))
            rows.append(np.array([[label[c] for c in task.columns]], dtype=float))
    return np.concatenate(numbers), np.concatenate(rows), sentinels


class _Frames:
    """Frames merged over tasks, as arrays: key (video id · 2³² + 0-based frame), split code, the file id and
    line number that created each, one float column per label (NaN where absent) and which tasks label it."""

    def __init__(self) -> None:
        self.key, self.split, self.fid, self.number = (np.zeros(0, dtype=np.int64) for _ in range(4))
        self.labels: dict[str, np.ndarray] = {}
        self.has: dict[str, np.ndarray] = {}

    def add(self, task: str, columns: tuple[str, ...], key, split, fid, number, labels) -> np.ndarray:
        """Merge one task's labelled lines (in file order: the first line of a new frame creates it); returns
        the mask of the lines whose video lies in another split than their frame, left out."""
        new = pd.Index(self.key).get_indexer(key) < 0
        _, first = np.unique(key[new], return_index=True)
        create = np.sort(np.flatnonzero(new)[first])
        self.key, self.split, self.fid, self.number = (np.concatenate([old, values[create]]) for old, values in
                                                       ((self.key, key), (self.split, split), (self.fid, fid),
                                                        (self.number, number)))
        grown = len(self.key)
        for name, column in self.labels.items():
            self.labels[name] = np.concatenate([column, np.full(grown - len(column), np.nan)])
        for name, column in self.has.items():
            self.has[name] = np.concatenate([column, np.zeros(grown - len(column), dtype=bool)])
        at = pd.Index(self.key).get_indexer(key)
        conflict = self.split[at] != split
        at, labels = at[~conflict], labels[~conflict]
        for j, name in enumerate(columns):
            self.labels.setdefault(name, np.full(grown, np.nan))[at] = labels[:, j]
        self.has.setdefault(task, np.zeros(grown, dtype=bool))[at] = True
        return conflict


def _task_frames(root: Path, images: Path, options, problems: Problems) -> pd.DataFrame:
    """Frames of the per-video files of each task, merged per frame, sorted by video, then frame number."""
    videos: dict[str, int] = {}
    files: list[tuple[str, str, str]] = []  # (file, video, set name) by file id
    frames = _Frames()
    for name in options.tasks:
        task = TASKS[name]
        task_dir = root / options.annotations / getattr(options, task.key)
        if not task_dir.is_dir():
            raise FileNotFoundError(f"{task_dir} not found (set data.abaw.annotations / data.abaw.{task.key})")
        bad: list[tuple[int, int, str]] = []
        parts, sentinels = [], 0
        for code, set_name in enumerate(SETS):
            for file in sorted((task_dir / set_name).glob("*.txt")):
                fid, vid = len(files), videos.setdefault(file.stem, len(videos))
                files.append((str(file), file.stem, set_name))
                numbers, labels, dropped = _file_labels(str(file), task, bad, fid)
                sentinels += dropped
                parts.append((vid * 2**32 + numbers - 1, np.full(len(numbers), code), np.full(len(numbers), fid),
                              numbers, labels))
        _sentinel(name, problems, sentinels)
        if parts:
            key, split, fid, number, labels = (np.concatenate(arrays) for arrays in zip(*parts, strict=True))
            conflict = frames.add(name, task.columns, key, split, fid, number, labels)
            bad += [(f, n, f"video {files[f][1]} is in {files[f][2]} here but not in the other tasks")
                    for f, n in zip(fid[conflict].tolist(), number[conflict].tolist(), strict=True)]
        for f, n, reason in sorted(bad):
            problems.add(f"{files[f][0]}:{n}", reason)
    if not len(frames.key):
        return pd.DataFrame()
    names = list(videos)
    rank = np.empty(len(names), dtype=np.int64)
    rank[sorted(range(len(names)), key=names.__getitem__)] = np.arange(len(names))
    vid, frame = frames.key >> 32, frames.key & (2**32 - 1)
    order = np.lexsort((frame, rank[vid]))
    vid, frame = vid[order], frame[order]
    text = StringDType()
    folders = np.array([os.path.join(images, v) for v in names], dtype=text)[vid]
    paths = np.strings.add(np.strings.add(folders, os.sep), np.strings.add(np.strings.zfill(frame.astype(text), 5),
                                                                            ".jpg"))
    on_disk = _on_disk(paths, folders)
    problems.drop(NO_IMAGE, int((~on_disk).sum()))
    if not on_disk.any():
        return pd.DataFrame()
    order, vid = order[on_disk], vid[on_disk]
    file_names = np.array([file for file, _, _ in files], dtype=text)
    records = {"path": paths[on_disk].astype(object),
               "subject": np.array(names, dtype=object)[vid],
               "split": np.array(list(SETS.values()), dtype=object)[frames.split[order]],
               "domain": "affwild2",
               "source": np.strings.add(np.strings.add(file_names[frames.fid[order]], ":"),
                                        frames.number[order].astype(text)).astype(object)}
    for name in options.tasks:  # a task's columns only where it labels a frame kept
        if name in frames.has and frames.has[name][order].any():
            records.update({c: frames.labels[c][order] for c in TASKS[name].columns})
    return pd.DataFrame(records)


def _on_disk(paths: np.ndarray, folders: np.ndarray) -> np.ndarray:
    """Whether each path is among the files of its folder, listing each folder once (string arrays)."""
    text = StringDType()
    listed = [np.strings.add(f"{folder}{os.sep}", np.array(os.listdir(folder), dtype=text))
              for folder in np.unique(folders).tolist() if os.path.isdir(folder)]
    listed = np.concatenate(listed).astype(object) if listed else np.array([], dtype=object)
    return pd.Series(paths.astype(object), dtype=object).isin(pd.Series(listed, dtype=object)).to_numpy()


def read(root: Path, data_cfg, problems: Problems) -> pd.DataFrame:
    options = data_cfg.abaw
    tasks = list(options.tasks)
    images = root / (data_cfg.variant or "cropped_aligned")
    if tasks != ["MTL"]:
        if not tasks or any(t not in TASKS for t in tasks):
            raise ValueError(f"data.abaw.tasks={tasks}: choose from {', '.join(TASKS)}, or [MTL] alone")
        return _task_frames(root, images, options, problems)
    frames = _mtl_frames(root, images, options, problems)
    table = pd.DataFrame([frames[key] for key in sorted(frames)])  # by video, then image name
    if table.empty:
        return table
    text = StringDType()
    on_disk = _on_disk(table["path"].to_numpy(dtype=text), table["path"].str.rpartition(os.sep)[0].to_numpy(dtype=text))
    problems.drop(NO_IMAGE, int((~on_disk).sum()))
    kept = table[on_disk].reset_index(drop=True)
    return kept if len(kept) else pd.DataFrame()
