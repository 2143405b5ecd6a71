"""Helpers shared by the readers: native label parsing, annotation files, required columns, boxes and folds."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from fer_bench.data.records import Problems, read_rgb
from fer_bench.labels import NativeTable

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


def native_label(text: str, table: NativeTable, base: int = 0) -> int:
    """Canonical id of a native label as written in a file (``base`` = 1 for 1-based files such as RAF-DB).

    Accepts integers and integral floats (``3.0000000e+00``); anything else raises ValueError naming the value.
    """
    last = base + len(table.to_canonical) - 1
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"label {text!r} is not a number ({table.name} labels are {base}..{last})") from None
    if not value.is_integer() or not base <= value <= last:
        raise ValueError(f"label {text.strip()} outside {table.name}'s {base}..{last}")
    return table.to_canonical[int(value) - base]


def lines(file: Path, skip_header: bool = False) -> Iterator[tuple[int, list[str]]]:
    """``(line number, fields)`` of every non-blank line of a whitespace- or comma-separated text file."""
    with open(file) as f:
        for number, text in enumerate(f, start=1):
            if (skip_header and number == 1) or not text.strip():
                continue
            yield number, text.replace(",", " ").split()


def read_table(file: Path, needed: tuple[str, ...]) -> pd.DataFrame:
    """A CSV file as strings, after checking it has the ``needed`` columns; data row i is file line i + 2."""
    if not file.is_file():
        raise FileNotFoundError(f"annotation file {file} not found")
    table = pd.read_csv(file, dtype=str, keep_default_na=False, skipinitialspace=True)
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise ValueError(f"{file}: no column {', '.join(repr(c) for c in missing)}; "
                         f"columns are {', '.join(table.columns)}")
    return table


def first_dir(root: Path, candidates: tuple[str, ...], what: str) -> Path:
    """The first of ``root/<candidate>`` that exists; FileNotFoundError listing where it looked."""
    for name in candidates:
        if (root / name).is_dir():
            return root / name
    looked = ", ".join(str(root / c) for c in candidates)
    raise FileNotFoundError(f"no {what} folder under {root} (looked for {looked})")


def image_files(folder: Path) -> list[str]:
    """Image files under ``folder`` (any depth, symlinked folders not followed) as path strings, in ``Path``
    order: a depth-first walk with each folder's entries sorted by name, one ``scandir`` per folder and no
    ``stat`` per file, so that listing a million images takes seconds."""
    found: list[str] = []

    def visit(where: str) -> None:
        with os.scandir(where) as entries:
            ordered = sorted(entries, key=lambda e: e.name)
        for entry in ordered:
            if entry.is_dir(follow_symlinks=False):
                visit(entry.path)
            elif (dot := entry.name.rfind(".")) > 0 and entry.name[dot:].lower() in IMAGE_SUFFIXES \
                    and entry.is_file():
                found.append(entry.path)

    visit(os.fspath(folder))
    return found


def images_in(folder: Path) -> list[Path]:
    """Image files under ``folder`` (any depth), sorted."""
    return [Path(p) for p in image_files(folder)]


Box = tuple[str, int, int, int, int, Path]  # where, top, bottom, left, right, output PNG


def crop_to(source: Path, boxes: list[Box], problems: Problems) -> list[bool]:
    """Cut ``(where, top, bottom, left, right, out_png)`` boxes (rows top:bottom, columns left:right, clipped to
    the picture) out of one decoded picture; returns which crops were written. Crops already present (left by an
    interrupted build, each written whole) are kept, and a picture whose crops all exist is not decoded."""
    if all(out.is_file() for *_, out in boxes):
        return [True] * len(boxes)
    try:
        image = read_rgb(str(source))
    except ValueError as e:
        for where, *_ in boxes:
            problems.add(where, str(e))
        return [False] * len(boxes)
    height, width = image.shape[:2]
    written = []
    for where, top, bottom, left, right, out in boxes:
        top, bottom, left, right = max(top, 0), min(bottom, height), max(left, 0), min(right, width)
        if bottom <= top or right <= left:
            problems.add(where, f"face box lies outside the {width}x{height} image {source}")
            written.append(False)
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(f".{out.stem}.{os.getpid()}.png")
        write_rgb(partial, image[top:bottom, left:right])
        os.replace(partial, out)
        written.append(True)
    return written


def _cut_picture(job: tuple[Path, list[Box]]) -> tuple[list[bool], list[tuple[str, str]]]:
    """``crop_to`` of one picture in a worker process: which crops were written, and the problems found."""
    found = Problems("skip")
    return crop_to(*job, found), found.items


def cut_faces(pictures: Path, boxes: dict[str, list[Box]], rows: list[dict], problems: Problems,
              workers: int = 0) -> list[dict]:
    """Cut every box out of its picture ``pictures/<name>`` (each decoded once; in ``workers`` processes when
    above 0, with a progress bar); returns the rows, matched by their ``source``, whose crop was written."""
    jobs = [(pictures / name, picture_boxes) for name, picture_boxes in boxes.items()]
    written = set()
    with ProcessPoolExecutor(workers) if workers > 0 else nullcontext() as pool:
        results = pool.map(_cut_picture, jobs, chunksize=16) if pool else map(_cut_picture, jobs)
        for (_, picture_boxes), (done, found) in tqdm(zip(jobs, results, strict=True), total=len(jobs),
                                                       unit="picture", desc="cutting faces",
                                                       disable=len(jobs) < 1000):
            for where, reason in found:
                problems.add(where, reason)
            written.update(where for (where, *_), ok in zip(picture_boxes, done, strict=True) if ok)
    return [row for row in rows if row["source"] in written]


def write_rgb(path: Path, rgb: np.ndarray) -> None:
    """Write an RGB (or grayscale) array losslessly as PNG."""
    pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb
    if not cv2.imwrite(str(path), pixels):
        raise OSError(f"cannot write {path}")


def subject_folds(subjects: pd.Series, fold: int | None, folds: int | None) -> pd.Series:
    """``test`` for the rows of the held-out subjects of ``fold`` (None: fold 0), ``train`` for the others.

    Subjects are sorted; fold k holds out subjects [k·L, (k+1)·L) with L = n // folds, the last fold also the
    remainder (CFEE's protocol in AngusMaiden/complex-FER).
    """
    if folds is None:
        raise ValueError("this data set is split by subject folds: set data.folds (e.g. data.folds=10)")
    fold = 0 if fold is None else fold
    if folds < 2 or not 0 <= fold < folds:
        raise ValueError(f"data.fold={fold} must lie in 0..{folds - 1} (data.folds={folds}, at least 2)")
    ordered = sorted(subjects.dropna().unique())
    length = len(ordered) // folds
    if length == 0:
        raise ValueError(f"{len(ordered)} subject(s) cannot make data.folds={folds} subject folds")
    end = len(ordered) if fold == folds - 1 else (fold + 1) * length
    held = set(ordered[fold * length:end])
    return pd.Series(np.where(subjects.isin(held), "test", "train"), index=subjects.index)
