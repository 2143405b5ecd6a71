"""The per-image check of ``check_files``, done once per file version and remembered.

``data.check`` picks how much is verified: ``full`` opens each image's header and last bytes (``image_problem``)
the first time a file is seen and stores the verdict, keyed by path, size and modification time, in
``<data.cache_dir>/checks/<root hash>.parquet``; later runs only ``stat`` the files and re-check the ones whose size
or modification time changed, or that are new. A file that is gone is reported missing (never from the cache).
``stat`` only requires each file to exist and be non-empty; ``off`` checks nothing (a bad image then fails when the
loader decodes it).

The table is rewritten whole into a temporary file and renamed into place (``os.replace``), so two runs writing
at once leave one complete table, and a killed or damaged write is never read as complete: a table that cannot be
read is ignored (every header checked again) and replaced. Each run that checks headers appends one line
``<time> <host> <pid> checked=<n> cached=<m>`` to ``<root hash>.log`` beside the table.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from fer_bench.data.records import Problems, image_problem

log = logging.getLogger(__name__)

CHECK_MODES = ("full", "stat", "off")
CHECK_VERSION = 1  # bump when image_problem judges differently: it is part of every table's name
COLUMNS = ("path", "size", "mtime_ns", "problem")


def table_path(cache_dir: Path, root: Path) -> Path:
    """Where the verdicts for images read from data set ``root`` are stored."""
    key = hashlib.sha1(f"{Path(root).expanduser().resolve()}|v{CHECK_VERSION}".encode()).hexdigest()[:16]
    return Path(cache_dir).expanduser() / "checks" / f"{key}.parquet"


def stat_files(paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Size and modification time (ns) of each file; size -1 where the file cannot be stat'ed."""
    size = np.full(len(paths), -1, dtype=np.int64)
    mtime = np.zeros(len(paths), dtype=np.int64)
    stat = os.stat
    for i, path in enumerate(paths):
        try:
            st = stat(path)
        except OSError:
            continue
        size[i], mtime[i] = st.st_size, st.st_mtime_ns
    return size, mtime


def load_table(path: Path) -> pd.DataFrame:
    """The stored verdicts, or an empty table when there are none or the file is unreadable (then logged)."""
    empty = pd.DataFrame({"path": pd.Series(dtype=object), "size": pd.Series(dtype=np.int64),
                          "mtime_ns": pd.Series(dtype=np.int64), "problem": pd.Series(dtype=object)})
    if not path.is_file():
        return empty
    try:
        table = pq.read_table(path).to_pandas()
        if tuple(table.columns) != COLUMNS or table["problem"].isna().any():
            raise ValueError(f"not a table of {', '.join(COLUMNS)}")
    except (OSError, ValueError, pa.ArrowException) as e:
        log.warning("image check cache %s is unreadable (%s): every image is checked again", path, e)
        return empty
    return table


def save_table(path: Path, table: pd.DataFrame) -> None:
    """Write ``table`` to a temporary file beside ``path`` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        pq.write_table(pa.Table.from_pandas(table[list(COLUMNS)], preserve_index=False), tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _check_headers(paths: list[str]) -> list[str | None]:
    if not paths:
        return []
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return list(pool.map(image_problem, paths))


def image_problems(paths: list[str], root: Path, mode: str, cache_dir: Path | str) -> list[str | None]:
    """Why each image cannot be used (None when it can), per ``data.check`` ``mode``; see the module docstring."""
    if mode not in CHECK_MODES:
        raise ValueError(f"data.check={mode!r}: expected one of {', '.join(CHECK_MODES)}")
    if mode == "off":
        return [None] * len(paths)
    size, mtime = stat_files(paths)
    missing = size < 0
    if mode == "stat":
        return [f"missing image file {p}" if s < 0 else f"empty image file {p}" if s == 0 else None
                for p, s in zip(paths, size.tolist(), strict=True)]
    where = table_path(cache_dir, root)
    old = load_table(where)
    at = pd.Index(old["path"]).get_indexer(paths) if len(old) else np.full(len(paths), -1)
    known = at >= 0
    hit = known & ~missing
    hit[known] &= (old["size"].to_numpy()[at[known]] == size[known]) & (
        old["mtime_ns"].to_numpy()[at[known]] == mtime[known])
    todo = np.flatnonzero(~hit & ~missing)
    found = np.empty(len(paths), dtype=object)
    found[hit] = [p or None for p in old["problem"].to_numpy()[at[hit]].tolist()]  # "" marks a sound image
    found[missing] = [f"missing image file {paths[i]}" for i in np.flatnonzero(missing)]
    found[todo] = _check_headers([paths[i] for i in todo])
    if len(todo):
        _remember(where, old, paths, size, mtime, found, ~missing, int(hit.sum()))
    return found.tolist()


def _remember(where: Path, old: pd.DataFrame, paths: list[str], size: np.ndarray, mtime: np.ndarray,
              found: np.ndarray, present: np.ndarray, cached: int) -> None:
    """Store the verdicts of the present files (and keep the old ones of files this read did not list)."""
    current = pd.DataFrame({"path": np.asarray(paths, dtype=object)[present], "size": size[present],
                            "mtime_ns": mtime[present],
                            "problem": [p or "" for p in found[present].tolist()]})
    others = old[~old["path"].isin(current["path"])] if len(old) else old
    checked = int(present.sum()) - cached
    try:
        save_table(where, pd.concat([others, current], ignore_index=True) if len(others) else current)
        with open(where.with_suffix(".log"), "a") as f:
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {socket.gethostname()} {os.getpid()} "
                    f"checked={checked} cached={cached}\n")
    except OSError as e:  # a read-only cache must not stop a run: the check is simply redone next time
        log.warning("cannot store the image check in %s: %s", where, e)
    log.info("checked %d image header(s); %d unchanged since their last check (%s)", checked, cached, where)


def check_files(df: pd.DataFrame, problems: Problems, root: Path, data_cfg) -> pd.DataFrame:
    """Flag rows whose image is missing, empty, unreadable, oversized or truncated (as far as ``data.check``
    looks); returns the rows that remain.

    A problem is located at the row's ``source`` (annotation file and line) when the reader gave one, else at
    the image path itself.
    """
    if df.empty:
        return df
    found = image_problems(df["path"].tolist(), root, data_cfg.check, data_cfg.cache_dir)
    where = df["source"].fillna(df["path"]) if "source" in df else df["path"]
    bad = np.array([p is not None for p in found], dtype=bool)
    for w, problem in zip(where[bad], np.asarray(found, dtype=object)[bad], strict=True):
        problems.add(str(w), problem)
    return df[~bad]
