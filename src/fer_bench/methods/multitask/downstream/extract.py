"""``fer-bench extract``: run a frozen multitask network over a data set and store, for every image, its
embedding f and its scores W·f + b (HSEmotion, Savchenko 2024, stage 3), with the record's columns and split. The scores
are the C expression logits, then valence and arousal when the network has them (metadata ``score_names``).

One parquet row per record of the data set, keyed by ``path`` (the records' id): images without a label in the
label space are kept (``label`` = −1). Splits are the run's own (``<run>/splits``) when the run's data is
extracted, otherwise assigned as the DataModule would. The file's metadata names the label space and classes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from tqdm import tqdm

from fer_bench import labels as L
from fer_bench.config import ConfigError, build_config, load_run_config, split_selectors
from fer_bench.data.datamodule import FERDataset
from fer_bench.data.readers import read_records
from fer_bench.data.splits import assign_splits, load_splits
from fer_bench.data.transforms import eval_transform
from fer_bench.methods.multitask.net import MultitaskNet, build_from_config
from fer_bench.models.backbones import BackboneInfo

META_KEY = b"fer_bench"


@torch.no_grad()
def embed_loader(net: MultitaskNet, loader, device: torch.device | str, progress: bool = False,
                 desc: str = "extract") -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings (N, D) and scores (N, C + 2, or C without V/A) of every batch of ``loader``, in order, in float32
    on the CPU."""
    was_training = net.training
    net.eval()
    embeddings, scores = [], []
    for batch in tqdm(loader, desc=desc, unit="batch", disable=not progress):
        f = net.embed(batch["image"].to(device))
        embeddings.append(f.float().cpu())
        scores.append(net.scores(f).float().cpu())
    net.train(was_training)
    return torch.cat(embeddings), torch.cat(scores)


def write_features(table: pd.DataFrame, path: Path, meta: dict) -> Path:
    """Parquet with ``meta`` (JSON) in the schema metadata."""
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), META_KEY: json.dumps(meta).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(arrow, path)
    return path


def read_features(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """A features table (``embedding``/``scores`` as arrays per row) and its metadata."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"features file {path} not found (write one with fer-bench extract)")
    arrow = pq.read_table(path)
    meta = json.loads((arrow.schema.metadata or {}).get(META_KEY, b"{}"))
    if "space" not in meta:
        raise ValueError(f"{path} is not a fer-bench features file (no '{META_KEY.decode()}' metadata)")
    return arrow.to_pandas(), meta


def extract(cfg: DictConfig, net: MultitaskNet, image_size: int, mean, std, out: Path,
            splits_from: Path | None = None, progress: bool = True, source: str = "") -> Path:
    """Extract every record of ``cfg.data`` and write the features parquet ``out``."""
    records, _ = read_records(cfg.data)
    position = {cid: i for i, cid in enumerate(L.space(cfg.data.space))}
    label = records[cfg.data.target].map(position).fillna(-1).astype(np.int64)
    if splits_from is not None:
        split = load_splits(records, splits_from)
    else:
        d = cfg.data
        split = assign_splits(records, label, d.val_fraction, d.test_fraction, d.split_seed)
    dataset = FERDataset(records, label.to_numpy(), eval_transform(image_size, mean, std))
    loader = DataLoader(dataset, batch_size=cfg.data.eval_batch_size or cfg.data.batch_size,
                        num_workers=cfg.data.num_workers)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    embeddings, scores = embed_loader(net.to(device), loader, device, progress)
    table = records.assign(split=split, label=label.to_numpy(), embedding=list(embeddings.numpy()),
                           scores=list(scores.numpy()))
    names = L.class_names(cfg.data.space)
    meta = {"space": cfg.data.space, "class_names": names, "data": cfg.data.name, "backbone": cfg.backbone.name,
            "score_names": [*names, *(("valence", "arousal") if net.va else ())], "image_size": image_size,
            "mean": list(mean), "std": list(std), "source": source}
    return write_features(table, out, meta)


def _run_net(cfg: DictConfig, ckpt: Path) -> tuple[MultitaskNet, BackboneInfo]:
    """The network of a multitask run with the weights of one of its Lightning checkpoints."""
    net, info = build_from_config(cfg)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    net.load_state_dict({k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")})
    return net, info


def command(run: str | None, kind: str, out: str | None, overrides: list[str]) -> Path:
    """``fer-bench extract``: from a run's checkpoint, or from ``method.weights`` (e.g. a converted model)."""
    selectors, values = split_selectors(overrides)
    if run is None:
        cfg = build_config(["method=multitask", *overrides])
        if not cfg.method.weights or out is None:
            raise ConfigError("fer-bench extract needs run=<run dir>, or method.weights=<network state_dict> "
                              "and out=<file.parquet>")
        net, info = build_from_config(cfg)
        return extract(cfg, net, info.image_size, info.mean, info.std, Path(out), source=cfg.method.weights)
    run_dir = Path(run)
    cfg = load_run_config(run_dir)
    if cfg.method.name != "multitask":
        raise ConfigError(f"{run_dir} is a '{cfg.method.name}' run; fer-bench extract needs a multitask run")
    splits_from = run_dir / "splits"
    if "data" in selectors:
        cfg.data = build_config([f"method={cfg.method.name}", *overrides]).data
        splits_from = None
    elif values:
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(values))
        except Exception as e:  # OmegaConf names the offending key
            raise ConfigError(f"bad override for fer-bench extract: {e}") from None
    ckpt = run_dir / "checkpoints" / f"{kind}.ckpt"
    if not ckpt.is_file():
        raise ConfigError(f"no checkpoint {ckpt}; ckpt must be best or last")
    net, info = _run_net(cfg, ckpt)
    suffix = f"_{cfg.data.name}" if "data" in selectors else ""
    target = Path(out) if out else run_dir / f"features_{kind}{suffix}.parquet"
    return extract(cfg, net, info.image_size, info.mean, info.std, target, splits_from, source=str(ckpt))
