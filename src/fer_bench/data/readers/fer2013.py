"""FER2013 (docs/datasets.md §3.5): ``<root>/fer2013.csv`` with columns ``emotion, pixels, Usage``; each image is
48x48 grayscale, stored as 2,304 space-separated values. The pixels are decoded once into PNG files under
``data.cache_dir`` (data/cache.py), so the pipeline reads image paths as for any other data set. Emotion 0 Angry …
6 Neutral; Usage Training / PublicTest / PrivateTest → train / val / test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fer_bench.data.cache import cached_from_file
from fer_bench.data.readers.common import native_label, read_table, write_rgb
from fer_bench.data.records import Problems
from fer_bench.labels import NATIVE_TABLES

FILE = "fer2013.csv"
USAGE = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
SIDE = 48


def pixels(text: str) -> np.ndarray:
    """The 48x48 uint8 image of a ``pixels`` cell; ValueError saying what is wrong with it."""
    values = text.split()
    if len(values) != SIDE * SIDE:
        raise ValueError(f"pixels hold {len(values)} values, expected {SIDE * SIDE} (48x48)")
    try:
        image = np.array(values, dtype=np.int64)
    except ValueError:
        raise ValueError("pixels are not all integers") from None
    if image.min() < 0 or image.max() > 255:
        raise ValueError("pixel values outside 0..255")
    return image.astype(np.uint8).reshape(SIDE, SIDE)


def usage_split(usage: str) -> str:
    if usage not in USAGE:
        raise ValueError(f"Usage {usage!r} is none of {', '.join(USAGE)}")
    return USAGE[usage]


def _decode(file: Path, folder: Path, problems: Problems) -> pd.DataFrame:
    table = read_table(file, ("emotion", "pixels", "Usage"))
    (folder / "images").mkdir()
    rows = []
    for i, row in enumerate(table.to_dict("records")):
        where = f"{file}:{i + 2}"
        try:
            split = usage_split(row["Usage"])
            expression = native_label(row["emotion"], NATIVE_TABLES["fer2013"])
            image = pixels(row["pixels"])
        except ValueError as e:
            problems.add(where, str(e))
            continue
        path = f"images/{i + 2:06d}.png"  # named after its line in the CSV
        write_rgb(folder / path, image)
        rows.append({"path": path, "expression": expression, "split": split, "domain": "fer2013", "source": where})
    return pd.DataFrame(rows, columns=["path", "expression", "split", "domain", "source"])


def read(root: Path, data_cfg, problems: Problems) -> pd.DataFrame:
    file = root / FILE
    return cached_from_file(file, "fer2013", data_cfg, lambda folder, found: _decode(file, folder, found), problems)
