"""The records table every reader returns, and the collector of bad-input problems.

Columns (DESIGN.md): ``path, expression, compound, valence, arousal, au*, intensity, subject, split, domain``.
``expression`` and ``compound`` hold canonical ids (nullable integers); a dataset lacks what it does not have.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from fer_bench.labels import AU_COLUMNS

REQUIRED_COLUMNS = ("path", "expression", "compound", "subject", "split", "domain")
FLOAT_COLUMNS = ("valence", "arousal", "intensity", *AU_COLUMNS)
SPLITS = ("train", "val", "test")


class DataError(ValueError):
    """Bad input data; the message names the file and line."""


@dataclass
class Problems:
    """Bad rows found while reading: raised at the end (``on_error=raise``) or skipped and listed."""

    on_error: str = "raise"
    items: list[tuple[str, str]] = field(default_factory=list)

    def add(self, where: str, reason: str) -> None:
        self.items.append((where, reason))

    def settle(self, dataset: str) -> None:
        """Raise with the first problems listed unless the user asked to skip bad input."""
        if self.items and self.on_error != "skip":
            shown = "\n".join(f"  {w}: {r}" for w, r in self.items[:10])
            more = f"\n  ... and {len(self.items) - 10} more" if len(self.items) > 10 else ""
            raise DataError(
                f"{len(self.items)} bad item(s) in data set '{dataset}':\n{shown}{more}\n"
                "Fix them, or set data.on_error=skip to skip, count and list them in the run directory."
            )

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.items, columns=["where", "reason"])


def normalise(df: pd.DataFrame) -> pd.DataFrame:
    """Give a reader's table the canonical column set and dtypes."""
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
    return out[ordered].reset_index(drop=True)


def read_rgb(path: str) -> np.ndarray:
    """Decode an image file to an RGB uint8 HxWx3 array (grayscale expanded); the one decode path."""
    image = cv2.imread(path, cv2.IMREAD_COLOR_RGB)
    if image is None:
        raise DataError(f"cannot decode image {path}")
    return image


def check_files(df: pd.DataFrame, problems: Problems, where: str) -> pd.DataFrame:
    """Flag rows whose image file is missing or empty; returns the rows that remain."""
    ok = []
    for i, p in enumerate(df["path"]):
        path = Path(p)
        if not path.is_file():
            problems.add(f"{where} row {i + 1}", f"missing image file {p}")
            ok.append(False)
        elif path.stat().st_size == 0:
            problems.add(f"{where} row {i + 1}", f"empty image file {p}")
            ok.append(False)
        else:
            ok.append(True)
    return df[np.array(ok, dtype=bool)] if len(df) else df
