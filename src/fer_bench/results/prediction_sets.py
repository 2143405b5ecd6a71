"""The kept test predictions of leaderboard groups, aligned image by image for paired statistics.

``<run>/predictions_<ckpt>.parquet`` is the file ``methods.predictions`` writes and reads: one row per test image
with ``id``, ``target`` and ``pred`` (indices into the file's ``class_names``), ``prob_<k>``, record columns such as
``subject``, ``domain``, ``skin_tone``. Two sides are paired only where their class names agree.

A *group* is what ``fer-bench compare`` compares: the runs (seeds) of one leaderboard ``(suite, name, data,
ckpt)``, chosen by a selector ``[SUITE/]NAME[@DATA]``, or a single run directory. Record columns the file lacks
(``gender``, any ``data.group_columns``) are joined from the run's data set on ``id`` when asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from fer_bench.methods import predictions as P
from fer_bench.results import leaderboard
from fer_bench.results.provenance import hash_of_test_split

REQUIRED = ("id", "target", "pred")
XDOM = "_xdom_"  # methods.predictions.file_name of a cross-domain target: predictions_<ckpt>_xdom_<target>.parquet


@dataclass
class Side:
    """One group's predictions on one test set: ``preds`` is ``(seeds, n)``, rows aligned with ``frame``."""

    label: str
    frame: pd.DataFrame  # one row per test image, sorted by id: id, target and any record columns
    preds: np.ndarray
    seeds: list
    run_dirs: list[Path]
    test_hash: str
    num_classes: int
    class_names: list | None = None  # from the files' metadata; None for a file without it

    @property
    def target(self) -> np.ndarray:
        return self.frame["target"].to_numpy(dtype=np.int64)


def prediction_file(run_dir: Path, ckpt: str) -> Path:
    return Path(run_dir) / P.file_name(ckpt)


def read_for_comparison(path: Path) -> tuple[pd.DataFrame, dict]:
    """The file's table sorted by id, checked for the columns a comparison needs, and its metadata."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: re-test the run (fer-bench test run={path.parent} "
                                f"ckpt={path.stem.removeprefix('predictions_')}) to write its predictions")
    frame, meta = P.read_predictions(path)
    missing = [c for c in REQUIRED if c not in frame]
    if missing:
        raise ValueError(f"{path}: no column {', '.join(missing)}; columns are {', '.join(frame.columns)}")
    if frame["id"].duplicated().any():
        raise ValueError(f"{path}: image {frame['id'][frame['id'].duplicated()].iloc[0]} is listed twice")
    return frame.sort_values("id", kind="stable").reset_index(drop=True), meta


def _num_classes(frame: pd.DataFrame, meta: dict) -> int:
    if "class_names" in meta:
        return len(meta["class_names"])
    probs = [c for c in frame.columns if c.startswith("prob_")]
    return len(probs) if probs else int(max(frame["target"].max(), frame["pred"].max())) + 1


def side(label: str, run_dirs: list[Path], ckpt: str, seeds: list | None = None) -> Side:
    """The predictions of one group's runs (seeds), checked to cover the same test images with the same targets."""
    read = [read_for_comparison(prediction_file(d, ckpt)) for d in run_dirs]
    frames, metas = [f for f, _ in read], [m for _, m in read]
    names = [m.get("class_names") for m in metas]
    hashes = [hash_of_test_split(Path(d) / "splits") for d in run_dirs]
    first = frames[0]
    for d, frame, h in zip(run_dirs[1:], frames[1:], hashes[1:], strict=True):
        if h != hashes[0] or not frame["id"].equals(first["id"]):
            raise ValueError(f"{label}: runs {run_dirs[0].name} and {Path(d).name} were tested on different test "
                             f"splits (test-split hash {hashes[0]} vs {h})")
        if not frame["target"].equals(first["target"]):
            bad = first["id"][frame["target"].to_numpy() != first["target"].to_numpy()].iloc[0]
            raise ValueError(f"{label}: runs {run_dirs[0].name} and {Path(d).name} disagree on the target of {bad}")
    for d, other in zip(run_dirs[1:], names[1:], strict=True):
        if other != names[0]:
            raise ValueError(f"{label}: runs {run_dirs[0].name} and {Path(d).name} have different class names "
                             f"({names[0]} vs {other})")
    keep = [c for c in first.columns if c != "pred" and not c.startswith("prob_")]
    return Side(label, first[keep], np.stack([f["pred"].to_numpy(dtype=np.int64) for f in frames]),
                list(seeds) if seeds is not None else [None] * len(frames), [Path(d) for d in run_dirs], hashes[0],
                max(_num_classes(f, m) for f, m in read), names[0])


def check_same_test_set(a: Side, b: Side) -> None:
    """Refuse a paired comparison of sides tested on different images, naming both test-split hashes."""
    if a.test_hash != b.test_hash or not a.frame["id"].equals(b.frame["id"]):
        raise ValueError(f"{a.label} and {b.label} were tested on different test splits (test-split hash "
                         f"{a.test_hash} vs {b.test_hash}): a paired comparison needs the same test images")
    if a.class_names != b.class_names and None not in (a.class_names, b.class_names):
        raise ValueError(f"{a.label} and {b.label} predict different classes ({a.class_names} vs {b.class_names}): "
                         "their targets and predictions are indices into different class lists")
    if not a.frame["target"].equals(b.frame["target"]):
        raise ValueError(f"{a.label} and {b.label} give the same test images different targets")


# ----------------------------------------------------------------------------------------- choosing groups


@dataclass(frozen=True)
class Selector:
    """``[SUITE/]NAME[@DATA]``: the leaderboard rows of run name NAME (the method key unless a suite named the
    run), optionally only those of suite SUITE and data set DATA."""

    name: str
    suite: str | None = None
    data: str | None = None

    @classmethod
    def parse(cls, text: str) -> Selector:
        body, _, data = text.partition("@")
        suite, _, name = body.rpartition("/")
        if not name:
            raise ValueError(f"selector {text!r}: expected [SUITE/]NAME[@DATA] or a run directory")
        return cls(name, suite if "/" in body else None, data or None)


def _group_key(row) -> str:
    return f"{row['suite'] + '/' if row['suite'] else ''}{row['name']}@{row['data']}"


def run_dir_of(row: pd.Series, runs_dir: Path) -> Path:
    """A leaderboard row's run directory: its ``run_dir`` column, else ``<runs>/<run_id>``."""
    candidates = [Path(str(row["run_dir"]))] if isinstance(row.get("run_dir"), str) else []
    candidates.append(Path(runs_dir) / str(row["run_id"]))
    hit = next((c for c in candidates if c.is_dir()), None)
    if hit is None:
        raise FileNotFoundError(f"run directory of {row['run_id']} not found (looked in "
                                f"{', '.join(map(str, candidates))})")
    return hit


def named_table(results_dir: Path) -> pd.DataFrame:
    """The leaderboard with empty suites as '' and missing run names filled with the method key."""
    table = leaderboard.read(results_dir)
    empty = pd.Series(index=table.index, dtype=object)
    return table.assign(suite=table.get("suite", empty).astype(object).fillna(""),
                        name=table.get("name", empty).astype(object).fillna(table["method"]))


def resolve(arg: str, table: pd.DataFrame, runs_dir: Path, ckpt: str, data: str | None = None,
            suite: str | None = None) -> tuple[str, list[Path], list]:
    """A command-line group: ``(label, run directories, seeds)`` of a run directory or a leaderboard selector.
    ``ckpt`` may name a cross-domain target's file, ``<ckpt>_xdom_<target>``: the rows of ``<ckpt>`` are chosen."""
    path = Path(arg)
    if (path / "config.yaml").is_file():
        rows = table[table["run_id"] == path.name] if "run_id" in table else table.iloc[0:0]
        return path.name, [path], rows["seed"].iloc[:1].tolist() or [None]
    sel = Selector.parse(arg)
    row_ckpt = ckpt.partition(XDOM)[0]
    rows = table[(table["name"] == sel.name) & (table["ckpt"] == row_ckpt)]
    for column, wanted in (("suite", sel.suite if sel.suite is not None else suite), ("data", sel.data or data)):
        if wanted is not None:
            rows = rows[rows[column] == wanted]
    keys = sorted({_group_key(r) for _, r in rows.iterrows()})
    if not keys:
        known = sorted({_group_key(r) for _, r in table[table["ckpt"] == row_ckpt].iterrows()})
        raise ValueError(f"{arg!r} matches no leaderboard group with ckpt={ckpt} and is no run directory; groups: "
                         f"{', '.join(known) or 'none'}")
    if len(keys) > 1:
        raise ValueError(f"{arg!r} matches {len(keys)} leaderboard groups ({', '.join(keys)}); name one as "
                         "SUITE/NAME@DATA, or give suite= / data=")
    rows = rows.drop_duplicates("run_id").sort_values("seed")
    return sel.name, [run_dir_of(r, runs_dir) for _, r in rows.iterrows()], rows["seed"].tolist()


# ---------------------------------------------------------------------------------- record columns by id


def match_ids(paths: pd.Series, ids: pd.Series, where: str) -> np.ndarray:
    """Position in ``paths`` (the records' image paths) of each prediction ``id`` (a path relative to some folder
    above the image): the record whose path ends with the id's components; none or several is an error."""
    ids = ids.astype(str)
    depth = ids.map(lambda i: len(PurePosixPath(i).parts))
    positions = np.empty(len(ids), dtype=np.int64)
    for d in sorted(depth.unique()):
        keys = pd.Series([str(PurePosixPath(*PurePosixPath(p).parts[-d:])) for p in paths.astype(str)])
        counts = keys.value_counts()
        lookup = dict(zip(keys, range(len(keys)), strict=True))
        for i in np.flatnonzero((depth == d).to_numpy()):
            key = ids.iloc[i]
            if counts.get(key, 0) != 1:
                problem = "matches several records" if counts.get(key, 0) else "is not in the data set's records"
                raise ValueError(f"{where}: prediction id {key} {problem}")
            positions[i] = lookup[key]
    return positions


def attach_columns(s: Side, columns: list[str]) -> Side:
    """``s`` with record columns its predictions lack joined from the data set of its first run, by ``id``."""
    missing = [c for c in columns if c not in s.frame]
    if not missing:
        return s
    from fer_bench.config import load_run_config
    from fer_bench.data.readers import read_records

    run_dir = s.run_dirs[0]
    cfg = load_run_config(run_dir)
    records, _ = read_records(cfg.data)
    absent = [c for c in missing if c not in records]
    if absent:
        raise ValueError(f"{s.label}: no column {', '.join(absent)} in {prediction_file(run_dir, '*').name} or "
                         f"in the records of data set '{cfg.data.name}' (record columns: "
                         f"{', '.join(records.columns)}); a csv data card keeps extra columns named in "
                         "data.group_columns")
    at = match_ids(records["path"], s.frame["id"], f"{run_dir}")
    frame = s.frame.assign(**{c: records[c].to_numpy()[at] for c in missing})
    return replace(s, frame=frame)
