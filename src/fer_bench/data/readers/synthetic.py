"""The built-in synthetic faces: generated once into a cache folder keyed by their parameters, then read
through the ``csv`` reader exactly like a real data set on disk."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from fer_bench.data.readers import csv
from fer_bench.data.records import Problems
from fer_bench.data.synthetic import SynthSpec, ensure_cached


def dataset_folder(data_cfg) -> Path:
    """Generate the synthetic set described by ``data.synth`` if needed; return its folder."""
    spec = SynthSpec(**OmegaConf.to_container(data_cfg.synth, resolve=True))
    return ensure_cached(spec, Path(data_cfg.cache_dir).expanduser(), progress=True)


def read(root: Path, data_cfg, problems: Problems) -> pd.DataFrame:
    return csv.read(root, data_cfg, problems)
