"""``fer-bench perf suite=data``: how indexing and loading scale with the number of images — a benchmark, never
a test.

For each size N it builds (once, in ``<data.cache_dir>/perf-data``) a class-folder tree of N tiny JPEGs made of
hard links to a few real files, so the disk cost is a directory entry per image. It then measures:

- indexing (``read_records``: listing the folders and checking every image, ``data.check=full``) with no stored
  verdicts (first run) and again over the unchanged tree (second run), in µs per image;
- one shuffled epoch of the ``FERDataset`` loader with ``workers`` forked workers, in µs per image;
- each worker's private memory (Private_Clean + Private_Dirty of ``/proc/<pid>/smaps_rollup``) after its first
  batch and at the end of the epoch: the growth is what forked workers copy of the parent's per-image data.

Budgets (rows ``budget_*``): second run ≤ 10 µs per image; per-image worker memory growth ≤ 10 MB per million
images (slope between the smallest and largest size, so a fixed per-worker overhead does not count); indexing
time per image of the largest size within 20 % of the smallest (linear in N). Results: ``<out>/perf_data.csv``
and ``<out>/perf_data.md``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from torch.utils.data import DataLoader

from fer_bench.config import build_config
from fer_bench.data.cache import build_once
from fer_bench.data.checked import table_path
from fer_bench.data.datamodule import FERDataset
from fer_bench.data.readers import read_records
from fer_bench.data.samplers import ShuffleSampler
from fer_bench.data.transforms import eval_transform

CLASSES = ("anger", "disgust", "fear", "happy", "sad", "surprise", "neutral")
LINKS_PER_FILE = 50_000  # below ext4's 65,000 hard links per inode
PER_FOLDER = 10_000  # images per sub-folder of a class folder
BUDGETS = {"second_index_us_per_image": 10.0, "worker_growth_mb_per_million": 10.0, "index_linearity": 1.2}


def build_tree(folder: Path, n: int) -> None:
    """``n`` images ``<class>/<block>/<i>.jpg``, hard links to ⌈n / LINKS_PER_FILE⌉ distinct tiny JPEGs."""
    sources = []
    for k in range(-(-n // LINKS_PER_FILE)):
        pixels = np.random.default_rng(k).integers(0, 256, (16, 16, 3), dtype=np.uint8)
        source = folder / f"source-{k}.jpg"
        cv2.imwrite(str(source), pixels)
        sources.append(source)
    for i in range(n):
        cls = CLASSES[i % len(CLASSES)]
        sub = folder / "images" / cls / f"{i // (PER_FOLDER * len(CLASSES)):04d}"
        if i % (PER_FOLDER * len(CLASSES)) < len(CLASSES):
            sub.mkdir(parents=True, exist_ok=True)
        os.link(sources[i // LINKS_PER_FILE], sub / f"{i:07d}.jpg")


def private_mb(pid: int) -> float:
    """Private (unshared) memory of a process in MB: Private_Clean + Private_Dirty of its smaps_rollup."""
    total = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            total += int(line.split()[1])
    return total / 1024


def time_index(cfg) -> tuple[float, pd.DataFrame]:
    started = time.perf_counter()
    records, _ = read_records(cfg)
    return time.perf_counter() - started, records


def measure_epoch(records: pd.DataFrame, workers: int, batch: int) -> dict:
    """One shuffled epoch over ``records`` with ``workers`` forked workers: seconds and worker private memory."""
    dataset = FERDataset(records, np.zeros(len(records), np.int64), eval_transform(16, (0.5,) * 3, (0.5,) * 3))
    loader = DataLoader(dataset, batch_size=batch, sampler=ShuffleSampler(len(dataset), seed=0),
                        num_workers=workers, persistent_workers=True, multiprocessing_context="fork")
    started = time.perf_counter()
    batches = iter(loader)
    next(batches)
    pids = [w.pid for w in batches._workers]  # noqa: SLF001 (the worker processes of this epoch)
    first = [private_mb(p) for p in pids]
    for _ in batches:
        pass
    seconds = time.perf_counter() - started
    last = [private_mb(p) for p in pids]
    del batches, loader
    growth = [b - a for a, b in zip(first, last, strict=True)]
    return {"seconds": seconds, "worker_start_mb": max(first), "worker_growth_mb": max(growth)}


def measure_size(n: int, cache_dir: Path, workers: int, batch: int) -> dict:
    tree = build_once(cache_dir / "perf-data" / f"tree-{n}", lambda tmp: build_tree(tmp, n))
    cfg = build_config(["data=folder", f"data.root={tree / 'images'}", f"data.cache_dir={cache_dir}"]).data
    table_path(cache_dir, tree / "images").unlink(missing_ok=True)  # the first run finds no stored verdict
    first, _ = time_index(cfg)
    second, records = time_index(cfg)
    if len(records) != n:
        raise RuntimeError(f"indexed {len(records)} of {n} images in {tree}")
    epoch = measure_epoch(records, workers, batch)
    return {"images": n, "first_index_us_per_image": 1e6 * first / n, "second_index_us_per_image": 1e6 * second / n,
            "epoch_us_per_image": 1e6 * epoch["seconds"] / n, "worker_start_mb": epoch["worker_start_mb"],
            "worker_growth_mb": epoch["worker_growth_mb"],
            "worker_growth_mb_per_million": epoch["worker_growth_mb"] * 1e6 / n}


def budget_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Each budget: the measured value, the bound and whether it holds."""
    small, large = table.iloc[0], table.iloc[-1]
    rows = [("second_index_us_per_image", float(table["second_index_us_per_image"].max()), "max over sizes")]
    if len(table) > 1:
        slope = (large["worker_growth_mb"] - small["worker_growth_mb"]) * 1e6 / (large["images"] - small["images"])
        rows.append(("worker_growth_mb_per_million", slope, f"slope {int(small['images'])} → {int(large['images'])}"))
        for kind in ("first", "second"):
            ratio = large[f"{kind}_index_us_per_image"] / small[f"{kind}_index_us_per_image"]
            rows.append(("index_linearity", ratio, f"{kind} run, µs per image at {int(large['images'])} / "
                                                    f"{int(small['images'])}"))
    return pd.DataFrame([{"budget": name, "value": value, "bound": BUDGETS[name], "holds": value <= BUDGETS[name],
                          "note": note} for name, value, note in rows])


def run_perf_data(sizes: list[int], out_dir: Path, cache_dir: Path, workers: int = 4, batch: int = 256) -> Path:
    table = pd.DataFrame([measure_size(n, cache_dir, workers, batch) for n in sorted(sizes)])
    budgets = budget_rows(table)
    out_dir.mkdir(parents=True, exist_ok=True)
    pd.concat([table.assign(budget=""), budgets], ignore_index=True).to_csv(out_dir / "perf_data.csv", index=False)
    md = out_dir / "perf_data.md"
    md.write_text(f"# Data scale benchmark\n\n{os.cpu_count()} CPU(s) visible, {workers} loader workers, batch "
                  f"{batch}; trees of hard-linked 16x16 JPEGs in {cache_dir / 'perf-data'}. Figures on a shared "
                  "machine are upper bounds.\n\n"
                  f"{table.to_markdown(index=False, floatfmt='.2f')}\n\n"
                  f"{budgets.to_markdown(index=False, floatfmt='.2f')}\n")
    return md
