"""One continual step: the data it draws, its ``Trainer.fit`` (best checkpoint restored), inference, its row of
the accuracy matrix, and the memory update. Shared by the scenario runner and the few-shot phase."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, Subset

from fer_bench.data.datamodule import FERDataModule
from fer_bench.data.scenario import Scenario, StepData
from fer_bench.engine.runner import build_trainer, load_weights
from fer_bench.methods.continual.memory import budget, per_class


def val_split(cfg) -> str:
    """faithful: the held-out test fold steers early stopping (as the official code); corrected: val subjects."""
    return "test" if cfg.method.protocol == "faithful" else "val"


def new_class_redraw(cfg) -> bool:
    subset = cfg.method.new_class_subset or ("redraw" if cfg.method.protocol == "faithful" else "fixed")
    return subset == "redraw"


def memory_budget(cfg, dm: FERDataModule, scenario: Scenario) -> tuple[int, int]:
    """(M, m) over the training images of all the scenario's classes."""
    return budget(len(dm.datasets["train"]), len(scenario.classes), cfg.method.mem_fraction)


def step_data(cfg, method, dm: FERDataModule, scenario: Scenario, step: int) -> StepData:
    """Step 0 and joint training: every training image of the seen classes. Compound steps: the memory plus the
    new classes' m-image subsets (all of them for strategies without memory, too: only replay differs)."""
    labels = dm.datasets["train"].label.numpy()
    seen = scenario.seen(step)
    batch = cfg.data.batch_size if step == 0 else cfg.method.step_batch_size
    common = {"seen": seen, "batch_size": batch, "seed": cfg.seed * 1000 + step, "val_split": val_split(cfg)}
    if step == 0 or method.strategy.joint:
        return StepData(fixed=np.flatnonzero(labels < seen), **common)
    total, m = memory_budget(cfg, dm, scenario)
    m_step = per_class(cfg.method.mem_mode, total, m, seen)
    new = np.flatnonzero(np.isin(labels, list(scenario.new_classes(step))))
    count = min(len(new), m_step * len(scenario.new_classes(step)))
    return StepData(fixed=method.memory.indices(), new_pool=new, new_count=count,
                    redraw=new_class_redraw(cfg), **common)


def fit_step(cfg, method, dm: FERDataModule, run_dir: Path, name: str, max_epochs: int, monitor: str,
             min_delta: float = 0.0) -> None:
    """Train the current step (``dm.step``), then restore the weights of its best validation epoch."""
    folder = run_dir / "checkpoints" / "current"
    shutil.rmtree(folder, ignore_errors=True)
    mode = "min" if monitor.endswith("loss") else "max"
    callbacks = [ModelCheckpoint(dirpath=folder, filename="best", monitor=monitor, mode=mode, save_weights_only=True,
                                 auto_insert_metric_name=False, enable_version_counter=False)]
    if cfg.method.patience > 0:
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=cfg.method.patience, min_delta=min_delta))
    step_cfg = cfg.copy()
    step_cfg.trainer.max_epochs = max_epochs
    trainer = build_trainer(step_cfg, run_dir, [CSVLogger(str(run_dir), name="logs", version=name)], callbacks)
    trainer.fit(method, datamodule=dm)
    load_weights(method, folder / "best.ckpt")
    shutil.rmtree(folder, ignore_errors=True)


@torch.no_grad()
def infer(method, dataset, indices, fn, batch_size: int = 128) -> torch.Tensor:
    """``fn(images)`` over ``dataset[indices]`` in eval mode, in this process (exact: no sharding)."""
    device = next(method.parameters()).device
    method.eval()
    loader = DataLoader(Subset(dataset, list(map(int, indices))), batch_size=batch_size, num_workers=0)
    outs = [fn(batch["image"].to(device)).float().cpu() for batch in loader]
    return torch.cat(outs) if outs else torch.empty(0)


def evaluate(method, dm: FERDataModule, scenario: Scenario, step: int) -> dict:
    """Test images of all seen classes: the accuracy-matrix row R[step][j] (j ≤ step), test images per task,
    and the predictions (argmax over the seen classes) with their labels, logits and dataset indices."""
    test = dm.datasets["test"]
    labels = test.label.numpy()
    index = np.flatnonzero(labels < scenario.seen(step))
    logits = infer(method, test, index, method.logits)
    preds = logits.argmax(dim=1).numpy()
    y = labels[index]
    tasks = scenario.task_of(y)
    sizes = [int((tasks == j).sum()) for j in range(step + 1)]
    if 0 in sizes:
        raise ValueError(f"task {sizes.index(0)} has no test images; the accuracy matrix needs every task tested")
    row = [float((preds[tasks == j] == y[tasks == j]).mean()) for j in range(step + 1)]
    return {"row": row, "sizes": sizes, "preds": preds, "labels": y, "logits": logits, "index": index}


def update_memory(cfg, method, dm: FERDataModule, scenario: Scenario, step: int) -> None:
    """After ``step``: trim every class to the next step's per-class budget, then select the classes this step
    added (and, with ``method.psmr.rerank``, every stored class again) — PSMR ranks all of a class's training
    images by the just-trained model's score; random replay draws a seeded subset."""
    kind = method.strategy.memory
    if kind is None:
        return
    total, m = memory_budget(cfg, dm, scenario)
    m_next = per_class(cfg.method.mem_mode, total, m, scenario.seen(min(step + 1, scenario.num_steps - 1)))
    method.memory.truncate(m_next)
    classes = list(scenario.new_classes(step))
    if kind == "psmr" and cfg.method.psmr.rerank:
        classes = sorted(set(classes) | set(method.memory.slots))
    labels = dm.datasets["train"].label.numpy()
    view = dm.eval_view("train")
    for c in classes:
        index = np.flatnonzero(labels == c)
        scores = infer(method, view, index, lambda x, c=c: method.class_scores(x, c)).numpy() if kind == "psmr" \
            else None
        method.memory.select(c, index, m_next, scores, seed=cfg.seed)
    method.memory.sync_from_rank0()
