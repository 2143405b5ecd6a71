"""FERPlus (docs/datasets.md §3.4) as microsoft/FERPlus ``generate_training_data.py`` writes it:
``<root>/FER2013Train``, ``FER2013Valid``, ``FER2013Test`` (→ train, val, test), each with 48x48 grayscale
``ferXXXXXXX.png`` images and a header-less ``label.csv``: the image name, then 10 vote counts for neutral,
happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF. (The ``label.csv`` copies shipped in the
repository carry a face box ``"(0, 0, 48, 48)"`` after the name; it is ignored.)

``data.ferplus.label_mode`` follows the reference ``src/ferplus.py``; single votes are zeroed first:
- ``majority``: keep an image when one emotion holds more than half of the remaining votes;
- ``probability``: keep the vote distribution of the top (up to 3) emotions when they hold more than half of the
  votes; it is stored as ``prob<canonical id>`` columns, and ``expression`` is its argmax.
Either way an image whose top vote is unknown or NF is dropped. Every drop is counted by its reason.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from fer_bench.data.records import Problems
from fer_bench.labels import NATIVE_TABLES

FOLDERS = {"FER2013Train": "train", "FER2013Valid": "val", "FER2013Test": "test"}
TABLE = NATIVE_TABLES["ferplus"]
EMOTIONS = len(TABLE.to_canonical)  # vote columns after these: unknown, NF
NO_MAJORITY = "FERPlus majority: no emotion holds more than half of the votes"
SPREAD = "FERPlus probability: the top emotions hold at most half of the votes"
UNKNOWN = "FERPlus: the top vote is unknown or not a face (NF)"
NO_NAME = "FERPlus: empty image name (image not in FERPlus)"


def _probability(raw: np.ndarray) -> np.ndarray | None:
    """Votes of the top (up to 3) classes, taken in tied groups until 75 % are covered; None when discarded."""
    raw, emotion = raw.copy(), np.zeros_like(raw)
    total, taken, count, valid = raw.sum(), 0.0, 0, True
    while taken < 0.75 * total and count < 3 and valid:
        top = raw.max()
        for i in range(len(raw)):
            if raw[i] != top:
                continue
            emotion[i], raw[i] = top, 0.0
            taken += top
            count += 1
            if i >= EMOTIONS:  # unknown or NF reached: stop; drop it when emotions came before it
                valid = False
                if emotion.sum() > top:
                    emotion[i] = 0.0
                    count -= 1
                break
    return None if emotion.sum() <= 0.5 * total or count > 3 else emotion


def vote_label(votes: np.ndarray, mode: str) -> tuple[np.ndarray | None, str | None]:
    """The label distribution over the 8 emotions (native order), or None and the reason for dropping."""
    raw = np.where(votes <= 1, 0.0, votes.astype(float))  # a single vote is an outlier
    if mode == "majority":
        if raw.max() <= 0.5 * raw.sum():
            return None, NO_MAJORITY
        emotion = np.zeros_like(raw)
        emotion[raw.argmax()] = raw.max()
    else:
        emotion = _probability(raw)
        if emotion is None:
            return None, SPREAD
    if emotion.argmax() >= EMOTIONS:
        return None, UNKNOWN
    kept = emotion[:EMOTIONS]
    return kept / kept.sum(), None


def _votes(fields: list[str]) -> np.ndarray:
    if len(fields) == 12:  # name, face box, 10 votes
        fields = [fields[0], *fields[2:]]
    if len(fields) != 11:
        raise ValueError(f"expected an image name and 10 vote counts, got {len(fields)} fields")
    try:
        votes = np.array([float(v) for v in fields[1:]])
    except ValueError:
        raise ValueError(f"vote counts must be numbers: {', '.join(fields[1:])}") from None
    if (votes < 0).any():
        raise ValueError("vote counts must not be negative")
    return votes


def read(root: Path, data_cfg, problems: Problems) -> pd.DataFrame:
    mode = data_cfg.ferplus.label_mode
    rows = []
    for folder, split in FOLDERS.items():
        label_file = root / folder / "label.csv"
        if not label_file.is_file():
            raise FileNotFoundError(f"{label_file} not found (FERPlus: {', '.join(FOLDERS)}, each with label.csv)")
        with open(label_file, newline="") as f:
            for number, fields in enumerate(csv.reader(f), start=1):
                where = f"{label_file}:{number}"
                if not fields:
                    continue
                try:
                    votes = _votes([x.strip() for x in fields])
                except ValueError as e:
                    problems.add(where, str(e))
                    continue
                if not fields[0].strip():
                    problems.drop(NO_NAME)
                    continue
                distribution, reason = vote_label(votes, mode)
                if distribution is None:
                    problems.drop(reason)
                    continue
                row = {"path": str(root / folder / fields[0].strip()), "split": split, "domain": "ferplus",
                       "expression": TABLE.to_canonical[int(distribution.argmax())], "source": where}
                if mode == "probability":
                    row.update({f"prob{TABLE.to_canonical[j]}": float(p) for j, p in enumerate(distribution)})
                rows.append(row)
    return pd.DataFrame(rows)
