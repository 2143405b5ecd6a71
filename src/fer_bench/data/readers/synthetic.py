"""The built-in synthetic faces: generated once into a cache folder keyed by their parameters, then read
through the ``csv`` reader exactly like a real data set on disk, plus each subject's ``skin_tone`` group."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from fer_bench.data.readers import csv
from fer_bench.data.records import Problems
from fer_bench.data.synthetic import SynthSpec, ensure_cached, skin_tones


def dataset_folder(data_cfg) -> Path:
    """Generate the synthetic set described by ``data.synth`` if needed; return its folder."""
    spec = SynthSpec(**OmegaConf.to_container(data_cfg.synth, resolve=True))
    return ensure_cached(spec, Path(data_cfg.cache_dir).expanduser(), progress=True)


def read(root: Path, data_cfg, problems: Problems) -> pd.DataFrame:
    group_columns = [c for c in data_cfg.get("group_columns") or () if c != "skin_tone"]
    records = csv.read(root, data_cfg, problems, group_columns)
    if records.empty:
        return records
    subjects = records["subject"].astype(int)
    tone = dict(zip(subjects.unique(), skin_tones(data_cfg.synth.seed, subjects.unique()), strict=True))
    return records.assign(skin_tone=subjects.map(tone))
