"""The method-agnostic parts of one scenario step: fitting a stage (``Trainer.fit``, best epoch restored) and
testing every seen class (one row of the accuracy matrix)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.loggers import CSVLogger

from fer_bench.data.datamodule import FERDataModule
from fer_bench.data.scenario import Scenario
from fer_bench.engine.min_delta_checkpoint import MinDeltaCheckpoint
from fer_bench.engine.runner import build_trainer, load_weights
from fer_bench.methods.inference import infer
from fer_bench.methods.scenario import FitStage


def fit_step(method, dm: FERDataModule, run_dir: Path, stage: FitStage) -> None:
    """Train the current step (``dm.step``) as ``stage`` says (logs under ``logs/<stage.name>``), then restore the
    weights of its best validation epoch: the last epoch that beat the kept best by more than ``stage.min_delta``
    (Keras ``restore_best_weights`` with ``min_delta``; 0: the epoch of the best value)."""
    folder = run_dir / "checkpoints" / "current"
    shutil.rmtree(folder, ignore_errors=True)
    mode = "min" if stage.monitor.endswith("loss") else "max"
    callbacks = [MinDeltaCheckpoint(stage.min_delta, dirpath=folder, filename="best", monitor=stage.monitor, mode=mode,
                                    save_weights_only=True, auto_insert_metric_name=False,
                                    enable_version_counter=False)]
    if stage.patience > 0:
        callbacks.append(EarlyStopping(monitor=stage.monitor, mode=mode, patience=stage.patience,
                                       min_delta=stage.min_delta))
    step_cfg = method.cfg.copy()
    step_cfg.trainer.max_epochs = stage.epochs
    trainer = build_trainer(step_cfg, run_dir, [CSVLogger(str(run_dir), name="logs", version=stage.name)], callbacks)
    trainer.fit(method, datamodule=dm)
    load_weights(method, folder / "best.ckpt")
    shutil.rmtree(folder, ignore_errors=True)


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
