"""The records table every reader returns, the collector of bad-input problems, and the one image decoder.

Columns: ``path, expression, compound, valence, arousal, au*, intensity, subject, split, domain``.
``expression`` and ``compound`` hold canonical ids (nullable integers); a dataset lacks what it does not have.
Optional: ``prob<id>`` (a label distribution over canonical expression ids, FERPlus ``probability`` mode),
``source`` (the annotation ``file:line`` a row came from, used to name bad input) and attribute columns for
per-group results (``ATTRIBUTE_COLUMNS`` a reader provides, plus those named in ``data.group_columns``), as text.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field

import cv2
import numpy as np
import pandas as pd
from PIL import Image

from fer_bench.labels import AU_COLUMNS, EXPRESSIONS

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("path", "expression", "compound", "subject", "split", "domain")
PROB_COLUMNS = tuple(f"prob{i}" for i in range(len(EXPRESSIONS)))
FLOAT_COLUMNS = ("valence", "arousal", "intensity", *AU_COLUMNS, *PROB_COLUMNS)
SPLITS = ("train", "val", "test")
# Attributes of the person shown, kept as text when a reader provides them (RAF-DB's manual annotation, the
# synthetic faces' skin tone).
ATTRIBUTE_COLUMNS = ("gender", "race", "age_group", "skin_tone")
# Decompression-bomb guard: images whose header declares more pixels are refused before any decoding.
MAX_IMAGE_PIXELS = 8192 * 8192
# What a complete file of these formats ends with (checked on its last bytes, padding stripped).
END_MARKERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND\xaeB`\x82"}


class DataError(ValueError):
    """Bad input data; the message names the file and line."""


@dataclass
class Problems:
    """Bad rows found while reading: raised at the end (``on_error=raise``) or skipped and listed."""

    on_error: str = "raise"
    items: list[tuple[str, str]] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)

    def add(self, where: str, reason: str) -> None:
        self.items.append((where, reason))

    def drop(self, reason: str, n: int = 1) -> None:
        """Count rows a data set's own protocol removes (sentinels, unlabelled frames): not errors, never silent."""
        if n:
            self.dropped[reason] = self.dropped.get(reason, 0) + n

    def log_dropped(self, dataset: str) -> None:
        for reason, n in self.dropped.items():
            log.info("data set '%s': dropped %d row(s): %s", dataset, n, reason)

    def listing(self, dataset: str, shown: int = 10) -> str:
        """The count of bad items and the first ``shown`` of them, one per line."""
        lines = "\n".join(f"  {w}: {r}" for w, r in self.items[:shown])
        more = f"\n  ... and {len(self.items) - shown} more" if len(self.items) > shown else ""
        return f"{len(self.items)} bad item(s) in data set '{dataset}':\n{lines}{more}"

    def settle(self, dataset: str) -> None:
        """Raise with the first problems listed unless the user asked to skip bad input."""
        if self.items and self.on_error != "skip":
            raise DataError(f"{self.listing(dataset)}\n"
                            "Fix them, or set data.on_error=skip to skip, count and list them in the run directory.")

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.items, columns=["where", "reason"])

    def dropped_frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.dropped.items()), columns=["reason", "count"])


def normalise(df: pd.DataFrame, keep: tuple[str, ...] = ()) -> pd.DataFrame:
    """Give a reader's table the canonical column set and dtypes; ``keep`` names extra columns kept as text
    (``ATTRIBUTE_COLUMNS`` always are, when present)."""
    out = df.copy()
    if "path" not in out:
        out["path"] = pd.Series(dtype=str)
    for col in ("expression", "compound"):
        out[col] = pd.array(out[col] if col in out else [pd.NA] * len(out), dtype="Int64")
    for col in ("subject", "split", "domain"):
        out[col] = (out[col] if col in out else pd.Series([pd.NA] * len(out), index=out.index)).astype("string")
    for col in FLOAT_COLUMNS:
        if col in out:
            out[col] = out[col].astype("float64")
    out["path"] = out["path"].astype(str)
    ordered = [*REQUIRED_COLUMNS, *[c for c in FLOAT_COLUMNS if c in out]]
    for col in dict.fromkeys((*ATTRIBUTE_COLUMNS, *keep)):
        if col in out and col not in ordered:
            out[col] = out[col].astype("string")
            ordered.append(col)
    if "source" in out:
        out["source"] = out["source"].astype("string")
        ordered.append("source")
    return out[ordered].reset_index(drop=True)


def image_problem(path: str) -> str | None:
    """Why an image file cannot be used — missing, empty, not an image, over ``MAX_IMAGE_PIXELS``, truncated —
    judged from its header and last bytes without decoding it; None when it looks sound."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                return f"empty image file {path}"
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                    with Image.open(f) as image:
                        kind, (width, height) = image.format, image.size
            except Image.DecompressionBombError:
                return f"image {path} declares more than {MAX_IMAGE_PIXELS} pixels (decompression-bomb limit)"
            except (OSError, SyntaxError, ValueError):
                return f"cannot read image file {path}: not a known image format or a damaged header"
            if width * height > MAX_IMAGE_PIXELS:
                return (f"image {path} declares {width}x{height} pixels, more than {MAX_IMAGE_PIXELS} "
                        "(decompression-bomb limit)")
            f.seek(max(0, size - 32))
            tail = f.read().rstrip(b"\x00\r\n\t ")
    except FileNotFoundError:
        return f"missing image file {path}"
    except OSError as e:
        return f"cannot open image file {path}: {e.strerror}"
    if kind in END_MARKERS and not tail.endswith(END_MARKERS[kind]):
        return f"truncated image file {path} (no {kind} end marker)"
    return None


def read_rgb(path: str, checked: bool = False) -> np.ndarray:
    """Decode an image file to an RGB uint8 HxWx3 array (grayscale expanded); the one decode path.

    The file is checked first (``image_problem``): an oversized header is refused before any pixel is decoded.
    ``checked=True`` skips that for files ``check_files`` (data/checked.py) has already passed (the training
    loader's hot path).
    """
    problem = None if checked else image_problem(path)
    if problem:
        raise DataError(problem)
    image = cv2.imread(path, cv2.IMREAD_COLOR_RGB)
    if image is None:
        raise DataError(f"cannot decode image {path}")
    return image
