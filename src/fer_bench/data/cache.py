"""Folders built once under ``data.cache_dir``: written into a temporary folder, marked complete, then renamed
into place atomically, so a killed build is never taken as complete and two processes building at once are both
safe. Face crops resume: the next build continues in the folder of a build that was killed (``resume``).

``cached_records`` uses this for readers whose images live inside another file (FER2013 pixels) or must be cut
out of a larger picture (AffectNet, ExpW boxes): the images are decoded once into the folder, and the rest of the
pipeline reads plain image paths like any other data set.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import uuid
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from fer_bench.data.records import Problems

COMPLETE_MARKER = ".complete"
CACHE_VERSION = 2  # bump when a cached reader's output changes: it is part of every key


def build_once(final: Path, build: Callable[[Path], None], resume: bool = False) -> Path:
    """``final``, built by ``build(tmp_folder)`` unless a complete copy already exists.

    A build that raises removes its folder. ``resume``: a build killed outright (no exception: SIGKILL, a lost
    node) leaves its folder, and the next build of the key continues in it (``build`` must accept a folder holding
    some of its output); otherwise such folders are deleted.
    """
    if (final / COMPLETE_MARKER).is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        if not _adopt_stale(final, tmp if resume else None):
            tmp.mkdir()
        build(tmp)
        (tmp / COMPLETE_MARKER).write_text("ok\n")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        os.replace(tmp, final)
    except OSError:
        if not (final / COMPLETE_MARKER).is_file():
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # another process finished first: use theirs
    return final


def _adopt_stale(final: Path, tmp: Path | None) -> bool:
    """Delete an unfinished folder of this key; move the first temporary folder left by a dead process on this
    host to ``tmp`` when given (its finished pieces are reused: the interrupted build resumes) and delete the
    others. Returns whether one was adopted."""
    if final.exists() and not (final / COMPLETE_MARKER).is_file():
        shutil.rmtree(final, ignore_errors=True)
    prefix = f".{final.name}.tmp-{socket.gethostname()}-"
    adopted = False
    for stale in sorted(final.parent.glob(f"{prefix}*")):
        pid = stale.name[len(prefix):].split("-")[0]
        if not pid.isdigit() or process_alive(int(pid)):
            continue
        if tmp is not None and not adopted:
            try:
                os.rename(stale, tmp)  # atomic: of two processes resuming at once, one gets it
                adopted = True
                continue
            except OSError:
                pass
        shutil.rmtree(stale, ignore_errors=True)
    return adopted


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def source_key(name: str, sources: list[Path], options: dict) -> str:
    """Cache folder name: the reader, a hash of its source files (path, size, mtime) and its options."""
    stats = []
    for path in sources:
        st = path.stat()
        stats.append([str(path.resolve()), st.st_size, st.st_mtime_ns])
    blob = json.dumps({"sources": stats, "options": options, "version": CACHE_VERSION}, sort_keys=True)
    return f"{name}-{hashlib.sha1(blob.encode()).hexdigest()[:12]}"


Builder = Callable[[Path, Problems], pd.DataFrame]


def cached_records(data_cfg, key: str, build: Builder, problems: Problems, resume: bool = False) -> pd.DataFrame:
    """Records built once by ``build(folder, problems)`` (paths relative to the folder) and read back;
    ``resume``: see ``build_once``.

    The problems and dropped-row counts found while building are saved with the images and replayed into
    ``problems`` on every read, so a cached data set reports its bad input exactly like a fresh read.
    """
    final = Path(data_cfg.cache_dir).expanduser() / key

    def build_into(tmp: Path) -> None:
        found = Problems("skip")
        table = build(tmp, found)
        if not len(table.columns):
            table = pd.DataFrame(columns=["path"])
        table.to_csv(tmp / "records.csv", index=False)
        found.frame().to_csv(tmp / "problems.csv", index=False)
        (tmp / "dropped.json").write_text(json.dumps(found.dropped, indent=1))

    folder = build_once(final, build_into, resume)
    table = pd.read_csv(folder / "records.csv", dtype={"path": str, "split": str, "source": str,
                                                        "subject": str, "domain": str})
    table["path"] = [str(folder / p) for p in table["path"]]
    saved = pd.read_csv(folder / "problems.csv", dtype=str, keep_default_na=False)
    for where, reason in saved.itertuples(index=False):
        problems.add(where, reason)
    for reason, n in json.loads((folder / "dropped.json").read_text()).items():
        problems.drop(reason, n)
    return table


def cached_from_file(file: Path, name: str, data_cfg, build: Builder, problems: Problems) -> pd.DataFrame:
    """``cached_records`` of a reader whose only source is one annotation ``file`` (which must exist)."""
    if not file.is_file():
        raise FileNotFoundError(f"{file} not found")
    return cached_records(data_cfg, source_key(name, [file], {}), build, problems)
