"""The predictions file: every tested checkpoint's per-image outputs, kept so that any metric, interval or paired
comparison can be recomputed later (``fer-bench compare``, ``report group_by=``).

``<run>/predictions_<ckpt>.parquet`` holds one row per test image, in the order of ``<run>/splits/test.txt``:

- ``id``: the image's path relative to the common folder of the run's split lists (the rule of ``splits_hash``,
  so two runs on the same split share ids across machines); the folder is the file's ``root`` metadata;
- the record's own columns that are not labels: ``subject``, ``domain`` (where known) and any attribute columns;
- ``target``: the class index in the file's ``class_names`` (metadata), ``pred``: the argmax of the logits (what the
  metrics count), ``prob_<k>``: softmax probabilities (float32) for every class k;
- ``target_valence``, ``target_arousal`` (NaN where unknown), ``target_au_<n>`` (the data set's AU labels) where the
  data has them; ``valence``, ``arousal``, ``au_<n>`` where the method outputs them.

Parquet metadata ``fer_bench`` (JSON): ``class_names``, ``root``. Cross-domain targets get one file each
(``predictions_<ckpt>_xdom_<target>.parquet``, the target's name in the metadata); continual runs write the final
step's (``predictions_final.parquet``). :class:`PredictionCollector` gathers the outputs of an evaluation loop over
DDP ranks (each image once, sorted by its dataset index); :func:`metric_intervals` turns a file into the bootstrap
intervals of its metrics (metrics/intervals.py).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.distributed as dist

from fer_bench.data.records import FLOAT_COLUMNS
from fer_bench.data.splits import common_root
from fer_bench.metrics import intervals as iv

# Record columns that are labels or bookkeeping, not attributes of the image: never copied as they are.
NOT_ATTRIBUTES = {"path", "expression", "compound", "split", "head", "source", *FLOAT_COLUMNS}
CLUSTER_UNITS = ("image", "subject", "video")  # data.cluster_by; subject and video both read the `subject` column
META_KEY = b"fer_bench"


class PredictionCollector:
    """Per-image outputs of one evaluation loop, keyed by the dataset index of each image."""

    def __init__(self) -> None:
        self.parts: list[dict[str, np.ndarray]] = []

    def add(self, index: torch.Tensor, outputs: dict[str, torch.Tensor]) -> None:
        """One batch: ``outputs["logits"]`` (B, C) and optional per-image outputs (B,), e.g. valence."""
        self.parts.append(batch_outputs(index, outputs))

    def reset(self) -> None:
        self.parts = []

    def gather(self, across_ranks: bool = True) -> dict[str, np.ndarray] | None:
        """All ranks' outputs (this process's alone without ``across_ranks``), sorted by dataset index; None if
        nothing was collected. Across ranks it is a collective: every rank calls it. An image seen twice (a
        padding sampler) is an error, not a duplicate row."""
        local = {k: np.concatenate([p[k] for p in self.parts]) for k in self.parts[0]} if self.parts else None
        self.reset()
        if across_ranks and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            shards = [None] * dist.get_world_size()
            dist.all_gather_object(shards, local)
            shards = [s for s in shards if s is not None]
            local = {k: np.concatenate([s[k] for s in shards]) for k in shards[0]} if shards else None
        if local is None:
            return None
        order = np.argsort(local["index"], kind="stable")
        merged = {k: v[order] for k, v in local.items()}
        if (np.diff(merged["index"]) == 0).any():
            raise RuntimeError("an evaluation image was scored twice (a padding sampler under DDP?): the "
                               "predictions file and the test metrics would count it twice")
        return merged


def batch_outputs(index: torch.Tensor, outputs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Dataset indices, the argmax of ``outputs["logits"]`` (what the metrics count), softmax probabilities
    (float32) and the other per-image outputs, as numpy arrays."""
    logits = outputs["logits"].detach()
    part = {"index": torch.as_tensor(index).detach().cpu().long().numpy(), "pred": logits.argmax(dim=1).cpu().numpy(),
            "prob": logits.float().softmax(dim=1).cpu().numpy()}
    return part | {k: v.detach().float().cpu().numpy() for k, v in outputs.items() if k != "logits"}


def split_rows(records: pd.DataFrame, split: str) -> pd.DataFrame:
    """The records of one split in dataset order (= the order of ``<run>/splits/<split>.txt``)."""
    return records[records["split"] == split].reset_index(drop=True)


def prediction_frame(rows: pd.DataFrame, target: np.ndarray, outputs: dict[str, np.ndarray],
                     root: str) -> pd.DataFrame:
    """The predictions table of the images ``rows.iloc[outputs["index"]]`` (see the module docstring)."""
    index = outputs["index"]
    picked = rows.iloc[index].reset_index(drop=True)
    frame = pd.DataFrame({"id": [os.path.relpath(p, root) for p in picked["path"]]})
    for column in picked.columns:
        if column not in NOT_ATTRIBUTES and picked[column].notna().any():
            frame[column] = picked[column].to_numpy()
    frame["target"] = np.asarray(target, dtype=np.int64)[index]
    if {"valence", "arousal"} <= set(picked):
        va = picked[["valence", "arousal"]].to_numpy(np.float64)
        known = (np.isfinite(va) & (va >= -1)).all(axis=1)  # ABAW marks a missing label with −5
        frame["target_valence"], frame["target_arousal"] = np.where(known[:, None], va, np.nan).T
    for column in picked.columns:
        if re.fullmatch(r"au\d+", column):
            frame[f"target_au_{column[2:]}"] = picked[column].to_numpy(np.float64)
    frame["pred"] = outputs["pred"].astype(np.int64)
    for k in range(outputs["prob"].shape[1]):
        frame[f"prob_{k}"] = outputs["prob"][:, k].astype(np.float32)
    for name, values in outputs.items():
        if name not in ("index", "pred", "prob"):
            frame[name] = values.astype(np.float32)
    return frame


def records_root(records: pd.DataFrame) -> str:
    """The folder the ids are relative to: the common folder of all the data set's (= the split lists') paths."""
    return common_root(records["path"].tolist())


def write_predictions(frame: pd.DataFrame, path: Path, meta: dict) -> Path:
    """Write the table with its metadata (``class_names``, ``root``, ...) atomically."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY: json.dumps(meta).encode()})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
    return path


def read_predictions(path: Path) -> tuple[pd.DataFrame, dict]:
    """The table and its metadata."""
    table = pq.read_table(path)
    return table.to_pandas(), json.loads((table.schema.metadata or {}).get(META_KEY, b"{}"))


def file_name(ckpt: str, target: str | None = None) -> str:
    """``predictions_<ckpt>.parquet``, or ``predictions_<ckpt>_xdom_<target>.parquet`` for a cross-domain target
    (characters other than letters, digits, ``.``, ``_``, ``-`` in its name become ``-``)."""
    if target is None:
        return f"predictions_{ckpt}.parquet"
    return f"predictions_{ckpt}_xdom_{re.sub(r'[^A-Za-z0-9._-]', '-', target)}.parquet"


def metric_intervals(frame: pd.DataFrame, num_classes: int, eval_cfg, cluster_by: str = "image",
                     prefix: str = "test/") -> dict:
    """Bootstrap intervals of the file's metrics: ``<prefix><metric>_lo`` / ``_hi`` for acc, uar, f1 and, with
    valence/arousal outputs and targets, ccc_v, ccc_a and va; plus ``ci_method``, ``ci_unit``, ``ci_level``,
    ``ci_resamples``. ``eval.bootstrap=0`` gives no intervals."""
    if not eval_cfg.bootstrap or frame.empty:
        return {}
    if cluster_by not in CLUSTER_UNITS:
        raise ValueError(f"data.cluster_by={cluster_by!r}; allowed: {', '.join(CLUSTER_UNITS)}")
    clusters = None
    if cluster_by != "image":
        if "subject" not in frame or frame["subject"].isna().any():
            raise ValueError(f"data.cluster_by={cluster_by}: every test image needs a subject/video id in the "
                             "records' subject column; set data.cluster_by=image for independent images")
        clusters = frame["subject"].astype(str).to_numpy()
    names = list(iv.CLASSIFICATION)
    stats = [iv.classification_stats(frame["target"].to_numpy(), frame["pred"].to_numpy(), num_classes)]
    va = [d for d in ("valence", "arousal") if d in frame and np.isfinite(frame.get(f"target_{d}", np.nan)).any()]
    if len(va) == 2:
        stats += [iv.ccc_stats(frame[d].to_numpy(), frame[f"target_{d}"].to_numpy()) for d in va]
        names += ["ccc_v", "ccc_a", "va"]
    cells = num_classes * num_classes

    def value(sums: np.ndarray) -> np.ndarray:
        cm = iv.cm_of(sums[..., :cells], num_classes)
        values = [fn(cm) for fn in iv.CLASSIFICATION.values()]
        if len(va) == 2:
            v, a = iv.ccc_of(sums[..., cells:cells + 6]), iv.ccc_of(sums[..., cells + 6:])
            values += [v, a, (v + a) / 2]
        return np.stack(values)

    result = iv.bootstrap_interval(stats, value, clusters=clusters,
                                   n_resamples=eval_cfg.bootstrap, seed=eval_cfg.bootstrap_seed,
                                   level=eval_cfg.ci_level, method=eval_cfg.ci_method)
    out = {}
    for name, lo, hi in zip(names, result.low, result.high, strict=True):
        out[f"{prefix}{name}_lo"], out[f"{prefix}{name}_hi"] = float(lo), float(hi)
    return out | {"ci_method": result.label(names), "ci_unit": cluster_by, "ci_level": eval_cfg.ci_level,
                  "ci_resamples": eval_cfg.bootstrap}
