"""FERDataModule: the one LightningDataModule every method uses.

A method states what it needs (``DataNeeds``: input size, normalisation, sampler); the DataModule reads the
records, maps labels into the configured space, assigns splits, and serves rank-aware loaders. It knows
nothing of methods beyond those needs.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from fer_bench import labels as L
from fer_bench.data.readers import prepare, read_records
from fer_bench.data.records import DataError, Problems, read_rgb
from fer_bench.data.samplers import (
    AugmentSeeds,
    ClassBalancedSampler,
    EvalShardSampler,
    QuadrupletSampler,
    Seeded,
    ShuffleSampler,
    TaskSampler,
)
from fer_bench.data.scenario import StepData, class_keys
from fer_bench.data.splits import assign_splits, load_splits, save_splits
from fer_bench.data.transforms import eval_transform, reseed, train_transform

log = logging.getLogger(__name__)


@dataclass
class DataNeeds:
    """What a method asks of the data."""

    image_size: int
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    sampler: str = "random"  # random | balanced | quadruplet (extras: QuadrupletSampler options)
    extras: dict = field(default_factory=dict)
    test_every_epoch: bool = False  # protocol=faithful: the test split rides along as a second val loader
    # Continual scenarios: rows labelled by class key (data.scenario.class_keys) in this head order instead of
    # data.target/data.space; rows of other classes are dropped and counted.
    classes: tuple[str, ...] | None = None
    base_space: str = "basic6"


def _unseed(transform, key):
    """A training sampler's ``Seeded(item, seed)`` (AugmentSeeds) seeds the item's augmentation; returns the item."""
    if isinstance(key, Seeded):
        reseed(transform, key.seed)
        return key.item
    return key


def records_digest(records: pd.DataFrame) -> str:
    """A hash of the rows' paths, splits and head labels, to compare the records of two processes."""
    rows = pd.util.hash_pandas_object(records[["path", "split", "head"]], index=False).to_numpy()
    return hashlib.sha1(rows.tobytes()).hexdigest()


def path_array(paths) -> np.ndarray:
    """Paths as one fixed-width UTF-8 byte array: a single buffer that forked loader workers share without copying
    (a list of ``str`` is copied page by page into every worker as reference counts are touched)."""
    return np.array([p.encode() for p in paths], dtype=np.bytes_)


class FERDataset(Dataset):
    """Images of one split with their head-index labels and, where present, valence/arousal and AUs.

    Per-image data live in numpy arrays and tensors (paths: ``path_array``), never in per-image Python objects.
    """

    def __init__(self, records: pd.DataFrame, label: np.ndarray, transform):
        self.paths = path_array(records["path"])
        self.label = torch.tensor(np.asarray(label), dtype=torch.long)
        self.transform = transform
        va_cols = [c for c in ("valence", "arousal") if c in records]
        self.va = torch.as_tensor(records[va_cols].to_numpy(np.float32)) if len(va_cols) == 2 else None
        au_cols = [c for c in L.AU_COLUMNS if c in records]
        self.au = torch.as_tensor(records[au_cols].to_numpy(np.float32)) if au_cols else None

    def __len__(self) -> int:
        return len(self.paths)

    def path(self, i: int) -> str:
        return self.paths[i].decode()

    def image(self, i: int) -> torch.Tensor:
        image = self.transform(image=read_rgb(self.path(i), checked=True))["image"]
        return torch.from_numpy(image.transpose(2, 0, 1).copy())

    def __getitem__(self, key: int | Seeded) -> dict:
        i = _unseed(self.transform, key)
        item = {"image": self.image(i), "label": self.label[i], "index": i}
        if self.va is not None:
            item["va"] = self.va[i]
        if self.au is not None:
            item["au"] = self.au[i]
        return item


class QuadrupletDataset(Dataset):
    """Items are (anchor, positive, negative, negative2) index tuples of a FERDataset, each image augmented
    independently: ``images`` 4×C×H×W, ``label`` (anchor class) and ``neg_label`` (negatives' class)."""

    def __init__(self, base: FERDataset):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int, int, int] | Seeded) -> dict:
        quad = _unseed(self.base.transform, key)
        images = torch.stack([self.base.image(i) for i in quad])
        return {"images": images, "label": self.base.label[quad[0]], "neg_label": self.base.label[quad[2]]}


class FERDataModule(pl.LightningDataModule):
    def __init__(self, data_cfg, needs: DataNeeds, run_dir: Path | None = None, seed: int = 0,
                 splits_from: Path | None = None):
        super().__init__()
        self.cfg, self.needs, self.seed = data_cfg, needs, seed
        self.run_dir = Path(run_dir) if run_dir else None
        self.splits_from = Path(splits_from) if splits_from else None
        self.space = L.space(data_cfg.space)
        self.class_names = L.class_names(data_cfg.space)
        self.records: pd.DataFrame | None = None
        self.problems: Problems | None = None
        self.datasets: dict[str, FERDataset] = {}
        self.step: StepData | None = None  # a continual step's view: training draw and evaluated classes

    @property
    def num_classes(self) -> int:
        return len(self.space)

    def prepare_data(self) -> None:
        # Lightning calls this on local rank 0 only, before any rank's setup: it generates the synthetic cache or
        # decodes a cached reader's images once, and under DDP checks the image headers once for every rank.
        prepare(self.cfg, check=self._world()[1] > 1)

    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _scenario_labels(self, records: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        """Rows whose class key is one of ``needs.classes``, and their head indices; others dropped, counted."""
        head = class_keys(records, self.needs.base_space).map({c: i for i, c in enumerate(self.needs.classes)})
        kept = head.notna()
        self.problems.drop("class not in the continual scenario", int((~kept).sum()))
        self.problems.settle(self.cfg.name)
        return records[kept].reset_index(drop=True), head[kept].astype(int).to_numpy()

    def _labels(self, records: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        """Rows with a label in the configured space, and their head indices. Rows without a label of the target
        are dropped and counted; a label outside the space is bad input unless ``data.drop_outside_space``."""
        if self.needs.classes is not None:
            return self._scenario_labels(records)
        column = records[self.cfg.target]
        usable = records[column.notna()]
        self.problems.drop(f"no {self.cfg.target} label", len(records) - len(usable))
        position = {cid: i for i, cid in enumerate(self.space)}
        head = usable[self.cfg.target].map(position)
        outside = head.isna()
        if self.cfg.drop_outside_space:
            self.problems.drop(f"{self.cfg.target} outside label space '{self.cfg.space}'", int(outside.sum()))
        else:
            where = usable["source"].fillna(usable["path"]) if "source" in usable else usable["path"]
            for w, value in zip(where[outside], usable.loc[outside, self.cfg.target], strict=True):
                self.problems.add(w, f"{self.cfg.target} id {value} is outside label space '{self.cfg.space}'")
        self.problems.settle(self.cfg.name)
        if len(usable) < len(records) or (outside.any() and self.cfg.drop_outside_space):
            log.info("data %s: kept %d of %d rows with a %s label in space '%s'", self.cfg.name,
                     int((~outside).sum()), len(records), self.cfg.target, self.cfg.space)
        kept = usable[~outside].reset_index(drop=True)
        return kept, head[~outside].astype(int).to_numpy()

    def setup(self, stage: str | None = None) -> None:
        if self.records is not None:
            return
        self.records = self.label_and_split(*read_records(self.cfg))
        self._same_on_every_rank()
        size, mean, std = self.needs.image_size, self.needs.mean, self.needs.std
        for name in ("train", "val", "test"):
            rows = self.records[self.records["split"] == name]
            if rows.empty and name == "val" and self.cfg.val_fraction == 0:
                continue  # protocol=faithful: no validation split; the test split selects, flagged
            if rows.empty:
                raise DataError(f"data set '{self.cfg.name}' has no {name} images after splitting")
            transform = train_transform(size, mean, std, self.cfg.augment) if name == "train" else eval_transform(
                size, mean, std, self.cfg.augment)
            self.datasets[name] = FERDataset(rows, rows["head"].to_numpy(), transform)
        log.info("data %s: %s", self.cfg.name, {k: len(v) for k, v in self.datasets.items()})

    def _same_on_every_rank(self) -> None:
        """Under DDP, stop unless every rank holds the same rows, labels and splits (a data set changing under a
        run, or a rank seeing another copy of it, would otherwise train and score on mixed data)."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return
        digests = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(digests, records_digest(self.records))
        differing = [rank for rank, d in enumerate(digests) if d != digests[0]]
        if differing:
            raise DataError(f"data set '{self.cfg.name}': ranks {differing} read other records or splits than "
                            "rank 0; is the data set being changed, or does every node see the same copy?")

    def label_and_split(self, records: pd.DataFrame, problems: Problems) -> pd.DataFrame:
        """The rows with a label of the run, with their ``head`` index and ``split``; the split lists, bad items
        and dropped-row counts are written to the run directory."""
        self.problems = problems
        records, label = self._labels(records)
        if self.splits_from is not None:
            split = load_splits(records, self.splits_from)
        else:
            split = assign_splits(records, pd.Series(label), self.cfg.val_fraction, self.cfg.test_fraction,
                                  self.cfg.split_seed)
        if self.run_dir is not None and self._world()[0] == 0:
            save_splits(records, split, self.run_dir / "splits")
            if self.problems.items:
                self.problems.frame().to_csv(self.run_dir / "skipped.csv", index=False)
            if self.problems.dropped:
                self.problems.dropped_frame().to_csv(self.run_dir / "dropped.csv", index=False)
        return records.assign(split=split, head=label)

    def eval_view(self, split: str) -> FERDataset:
        """The split with the evaluation transform (no augmentation), e.g. to score training images."""
        view = copy.copy(self.datasets[split])
        view.transform = eval_transform(self.needs.image_size, self.needs.mean, self.needs.std, self.cfg.augment)
        return view

    def per_device_batch(self, batch_size: int) -> int:
        """The configured global batch split over ranks; it must divide evenly."""
        world = self._world()[1]
        if batch_size % world:
            raise ValueError(f"data.batch_size={batch_size} is not divisible by the world size {world}")
        return batch_size // world

    def _loader(self, dataset: Dataset, sampler, batch_size: int) -> DataLoader:
        if not isinstance(sampler, EvalShardSampler):  # training: each item's augmentation seeded by the run's seed
            sampler = AugmentSeeds(sampler, self.seed, self._world()[0])
        workers = self.cfg.num_workers
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                          pin_memory=self.cfg.pin_memory and torch.cuda.is_available(),
                          persistent_workers=self.cfg.persistent_workers and workers > 0,
                          drop_last=False)

    def train_sampler(self):
        rank, world = self._world()
        dataset = self.datasets["train"]
        kind = self.needs.sampler if self.needs.sampler != "random" else self.cfg.sampler
        if kind == "balanced":
            return ClassBalancedSampler(dataset.label.numpy(), seed=self.seed, rank=rank, world=world)
        return ShuffleSampler(len(dataset), seed=self.seed, rank=rank, world=world)

    def train_dataloader(self) -> DataLoader:
        if self.step is not None:
            rank, world = self._world()
            s, batch = self.step, self.per_device_batch(self.step.batch_size)
            sampler = TaskSampler(s.fixed, s.new_pool, s.new_count, batch, s.redraw, seed=s.seed, rank=rank,
                                  world=world)
            return self._loader(self.datasets["train"], sampler, batch)
        batch = self.per_device_batch(self.cfg.batch_size)
        if self.needs.sampler == "quadruplet":
            rank, world = self._world()
            dataset = self.datasets["train"]
            sampler = QuadrupletSampler(dataset.label.numpy(), batch, seed=self.seed, num_replicas=world, rank=rank,
                                        **self.needs.extras)
            return self._loader(QuadrupletDataset(dataset), sampler, batch)
        return self._loader(self.datasets["train"], self.train_sampler(), batch)

    def step_subset(self, split: str) -> Dataset:
        """The split restricted to the current step's evaluated classes (the whole split outside scenarios)."""
        dataset = self.datasets[split]
        if self.step is None:
            return dataset
        classes = self.step.eval_only if self.step.eval_only is not None else range(self.step.seen)
        return Subset(dataset, np.flatnonzero(np.isin(dataset.label.numpy(), list(classes))).tolist())

    def eval_dataloader(self, split: str) -> DataLoader:
        rank, world = self._world()
        dataset = self.step_subset(split)
        batch = self.cfg.eval_batch_size or self.per_device_batch(self.cfg.batch_size)
        return self._loader(dataset, EvalShardSampler(len(dataset), rank, world), batch)

    @property
    def val_stages(self) -> tuple[str, ...]:
        """Metric stage of each validation loader: ``val`` (absent without a validation split) and, with
        ``needs.test_every_epoch``, ``test_epoch``."""
        if self.step is not None:
            return ("val",)
        stages = ("val",) if "val" in self.datasets else ()
        if self.needs.test_every_epoch:
            stages += ("test_epoch",)
        if not stages:
            raise DataError(f"data set '{self.cfg.name}': data.val_fraction=0 leaves no validation split and "
                            "nothing else is scored per epoch (only method.protocol=faithful selects on test)")
        return stages

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        if self.step is not None:
            return self.eval_dataloader(self.step.val_split)
        loaders = [self.eval_dataloader("test" if s == "test_epoch" else s) for s in self.val_stages]
        return loaders if len(loaders) > 1 else loaders[0]

    def test_dataloader(self) -> DataLoader:
        return self.eval_dataloader("test")
