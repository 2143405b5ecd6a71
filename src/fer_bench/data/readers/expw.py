"""ExpW (docs/datasets.md §3.8): ``<root>/label/label.lst``, one face per line: ``image_name face_id
face_box_top face_box_left face_box_right face_box_bottom face_box_cofidence expression_label`` (sic), over the
full scenes ``<root>/image/origin/<image_name>``. Each face is cut out once — rows top:bottom, columns
left:right — into ``data.cache_dir`` (data/cache.py). Labels 0 angry … 6 neutral. Exact duplicate lines are
dropped and counted; the same face listed twice with different content is an error. No official split: the
DataModule carves a seeded, stratified train/val/test and saves it with the run.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pandas as pd

from fer_bench.data.cache import cached_from_file
from fer_bench.data.readers.common import cut_faces, native_label
from fer_bench.data.records import Problems
from fer_bench.labels import NATIVE_TABLES

LABEL_FILE = Path("label") / "label.lst"
IMAGE_FOLDER = Path("image") / "origin"
DUPLICATE = "ExpW: exact duplicate line"


def _crop_all(root: Path, folder: Path, problems: Problems) -> pd.DataFrame:
    file = root / LABEL_FILE
    rows, boxes, seen_lines, seen_faces = [], defaultdict(list), set(), {}
    with open(file) as f:
        for number, text in enumerate(f, start=1):
            where, fields = f"{file}:{number}", text.split()
            if not fields:
                continue
            if text.strip() in seen_lines:
                problems.drop(DUPLICATE)
                continue
            seen_lines.add(text.strip())
            try:
                if len(fields) != 8:
                    raise ValueError(f"expected 8 fields (image_name face_id top left right bottom confidence "
                                     f"label), got {len(fields)}")
                image, face = fields[0], fields[1]
                top, left, right, bottom = (int(float(v)) for v in fields[2:6])
                expression = native_label(fields[7], NATIVE_TABLES["expw"])
            except ValueError as e:
                problems.add(where, str(e))
                continue
            if (image, face) in seen_faces:
                problems.add(where, f"face {face} of {image} is listed again with other values "
                                    f"(first at {seen_faces[image, face]})")
                continue
            seen_faces[image, face] = where
            crop = Path("crops") / f"{Path(image).stem}_{face}.png"
            boxes[image].append((where, top, bottom, left, right, folder / crop))
            rows.append({"path": str(crop), "expression": expression, "domain": "expw", "source": where})
    return pd.DataFrame(cut_faces(root / IMAGE_FOLDER, boxes, rows, problems),
                        columns=["path", "expression", "domain", "source"])


def read(root: Path, data_cfg, problems: Problems) -> pd.DataFrame:
    return cached_from_file(root / LABEL_FILE, "expw", data_cfg,
                            lambda folder, found: _crop_all(root, folder, found), problems)
