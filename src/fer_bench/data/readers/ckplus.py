"""CK+ (docs/datasets.md §3.7): sequences ``<root>/cohn-kanade-images/S005/001/S005_001_00000001.png``; a labelled
sequence has one ``<root>/Emotion/S005/001/S005_001_<peak frame>_emotion.txt`` holding a float code (0 neutral,
1 anger, 2 contempt, 3 disgust, 4 fear, 5 happy, 6 sadness, 7 surprise). No emotion file = no label: such
sequences are dropped and counted.

Protocol: the last ``data.ckplus.last_frames`` frames up to the peak frame carry the emotion; with
``data.ckplus.first_neutral`` the sequence's first frame is added as neutral. Splits: subject-independent folds
(``data.folds``, ``data.fold``) on sorted subject ids; val is carved from the training subjects.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fer_bench.data.readers.common import IMAGE_SUFFIXES, native_label, subject_folds
from fer_bench.data.records import Problems
from fer_bench.labels import NATIVE_TABLES, expression_id

UNLABELLED = "CK+: sequence without an emotion file (unlabelled)"
SUFFIX = "_emotion.txt"


def _sequence_rows(sequence: Path, emotions: Path, data_cfg, problems: Problems) -> list[dict]:
    subject = sequence.parent.name
    label_files = sorted((emotions / subject / sequence.name).glob(f"*{SUFFIX}"))
    if not label_files:
        problems.drop(UNLABELLED)
        return []
    if len(label_files) > 1:
        problems.add(str(label_files[1]), f"a second emotion file for sequence {subject}/{sequence.name}")
        return []
    label_file = label_files[0]
    where = f"{label_file}:1"
    try:
        expression = native_label(label_file.read_text().strip(), NATIVE_TABLES["ckplus"])
    except ValueError as e:
        problems.add(where, str(e))
        return []
    peak = sequence / f"{label_file.name[: -len(SUFFIX)]}.png"
    frames = sorted(p for p in sequence.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    labelled = sorted({p for p in frames if p.name <= peak.name} | {peak})[-data_cfg.ckplus.last_frames:]
    rows = [{"path": str(p), "expression": expression, "subject": subject, "source": where} for p in labelled]
    if data_cfg.ckplus.first_neutral and frames and frames[0] not in labelled:
        rows.insert(0, {"path": str(frames[0]), "expression": expression_id("neutral"), "subject": subject,
                        "source": where})
    return rows


def read(root: Path, data_cfg, problems: Problems) -> pd.DataFrame:
    images, emotions = root / "cohn-kanade-images", root / "Emotion"
    for folder in (images, emotions):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} not found (CK+ layout: cohn-kanade-images/, Emotion/)")
    if data_cfg.ckplus.last_frames < 1:
        raise ValueError(f"data.ckplus.last_frames={data_cfg.ckplus.last_frames} must be at least 1")
    rows = []
    for sequence in sorted(d for d in images.glob("*/*") if d.is_dir()):
        rows.extend(_sequence_rows(sequence, emotions, data_cfg, problems))
    table = pd.DataFrame(rows, columns=["path", "expression", "subject", "source"])
    return table.assign(split=subject_folds(table["subject"], data_cfg.fold, data_cfg.folds), domain="ckplus")
