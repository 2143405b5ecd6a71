"""Run orchestration: train, test a run directory, bench (train → select on val → test best and last).

A run directory holds ``config.yaml``, ``splits/``, ``checkpoints/``, ``logs/``, ``plots/``, ``test_<ckpt>.json``
and ``metrics.json``. Its name is fixed before any DDP rank starts: every rank derives it from the same
session stamp (``FER_BENCH_SESSION``, set by the launching process and inherited by the ranks).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path

import lightning.pytorch as pl
import pandas as pd
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from fer_bench.atomic import atomic_write_text
from fer_bench.config import load_run_config, to_yaml
from fer_bench.data.datamodule import FERDataModule
from fer_bench.engine import cross_domain, init_record
from fer_bench.engine.checkpoint_io import AtomicCheckpointIO
from fer_bench.engine.csv_history import keep_history
from fer_bench.engine.ddp_wait import FIND_UNUSED, START_METHODS, strategy_for
from fer_bench.engine.loggers import build_loggers, finish_wandb, log_images
from fer_bench.engine.resume import default_checkpoint
from fer_bench.engine.rng import RngState
from fer_bench.faults import fault_callbacks
from fer_bench.labels import class_names
from fer_bench.methods import predictions as P
from fer_bench.methods import spec_of
from fer_bench.methods.base import FERMethod
from fer_bench.models import weights_file
from fer_bench.results import domain_matrices, leaderboard
from fer_bench.results.plots import confusion_matrix_png
from fer_bench.results.provenance import provenance

CKPT_KINDS = ("best", "last")


def session_stamp() -> str:
    """A stamp shared by all ranks of one launch (set once, inherited through the environment)."""
    if "FER_BENCH_SESSION" not in os.environ:
        os.environ["FER_BENCH_SESSION"] = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)
    return os.environ["FER_BENCH_SESSION"]


def new_run_dir(cfg: DictConfig) -> Path:
    name = cfg.run_name or f"{cfg.method.name}-{cfg.data.name}"
    fold = f"-fold{cfg.data.fold}" if cfg.data.fold is not None else ""
    run_dir = Path(cfg.runs_dir) / f"{name}{fold}-s{cfg.seed}-{session_stamp()}"
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def build_method(cfg: DictConfig) -> pl.LightningModule:
    return spec_of(cfg.method.name).build(cfg, class_names(cfg.data.space))


def build_trainer(cfg: DictConfig, run_dir: Path, loggers: list, callbacks: list,
                  method: FERMethod | None = None) -> pl.Trainer:
    """The Lightning trainer of ``cfg.trainer``, fitted to ``method``: methods with manual optimisation clip their
    own gradients (``FERMethod.manual_step``), and a method that freezes parameters between epochs gets DDP's
    unused-parameter search (``FERMethod.ddp_find_unused_parameters``). DDP waits end after ``trainer.timeout_s``;
    checkpoints are written atomically."""
    t = cfg.trainer
    automatic = method is None or method.automatic_optimization
    strategy = t.strategy
    if method is not None and method.ddp_find_unused_parameters and strategy in START_METHODS:
        strategy = f"{strategy}{FIND_UNUSED}"
    return pl.Trainer(
        max_epochs=t.max_epochs, accelerator=t.accelerator, devices=t.devices, strategy=strategy_for(t, strategy),
        num_nodes=t.num_nodes, precision=t.precision, deterministic=t.deterministic,
        log_every_n_steps=t.log_every_n_steps, limit_train_batches=t.limit_train_batches,
        limit_val_batches=t.limit_val_batches, limit_test_batches=t.limit_test_batches,
        gradient_clip_val=t.gradient_clip_val if automatic else None,
        enable_progress_bar=t.progress_bar, enable_model_summary=False,
        default_root_dir=str(run_dir), logger=loggers, callbacks=[*callbacks, *fault_callbacks()],
        plugins=[AtomicCheckpointIO()], use_distributed_sampler=False,
    )


def load_weights(method: pl.LightningModule, ckpt_path: Path) -> None:
    """Model weights from a Lightning checkpoint, read with ``weights_only=True`` (no pickled code), strictly."""
    weights_file.load_weights_into(method, ckpt_path, what=f"the {type(method).__name__} method this config builds",
                                   hint="give a checkpoint of a run with the same method and sizes")


def _test_checkpoint(cfg, method, datamodule, run_dir: Path, kind: str, loggers: list, report_name: str):
    """Load a checkpoint kind, test it, and read back the report the method wrote (files survive ddp_spawn)."""
    load_weights(method, run_dir / "checkpoints" / f"{kind}.ckpt")
    method.report_path = run_dir / f"{report_name}_{kind}.json"
    method.predictions_path = run_dir / P.file_name(row_kind(cfg, kind))  # a re-test rewrites them
    # A CSV logger of its own: under ddp_spawn each launch re-creates the writer, which deletes an existing
    # metrics.csv, so sharing the fit's logger would wipe logs/metrics.csv (and the previous test's rows).
    loggers = [lg for lg in loggers if not isinstance(lg, CSVLogger)] + [
        CSVLogger(str(run_dir), name=report_name, version=kind)]
    trainer = build_trainer(cfg, run_dir, loggers, [], method)
    trainer.test(method, datamodule=datamodule, verbose=False)
    trainer.strategy.barrier("test report written")  # rank 0 writes it; under torchrun the others read it
    return json.loads(method.report_path.read_text()), trainer, loggers


def row_kind(cfg: DictConfig, kind: str) -> str:
    """A checkpoint kind as its leaderboard row names it: under protocol=faithful best.ckpt is the test-selected
    epoch (``best_test_epoch``)."""
    return "best_test_epoch" if kind == "best" and cfg.method.protocol == "faithful" else kind


def _test(cfg, method, datamodule, run_dir: Path, kind: str, loggers: list) -> dict:
    """Test one checkpoint kind after training, with its confusion-matrix plot; returns the test report."""
    report, trainer, loggers = _test_checkpoint(cfg, method, datamodule, run_dir, kind, loggers, "test")
    if trainer.is_global_zero:
        png = confusion_matrix_png(report["confusion_matrix"], report["class_names"],
                                   run_dir / "plots" / f"confusion_{kind}.png",
                                   f"{cfg.method.name} on {cfg.data.name} ({kind}): "
                                   f"acc {report['metrics']['test/acc']:.3f}")
        log_images(loggers, {f"plots/confusion_{kind}": png})
    return report


def fold_tag(cfg: DictConfig) -> dict[str, int]:
    """``{"fold": f}`` for a run on subject folds (fold 0 when unset, as the readers take it), else empty."""
    if cfg.data.folds is None:
        return {}
    return {"fold": 0 if cfg.data.fold is None else int(cfg.data.fold)}


def train_one(cfg: DictConfig, resume: Path | None = None, test: bool = True, resume_ckpt: Path | None = None) -> Path:
    """Train one seed; with ``test``, test best and last checkpoints, write metrics.json and leaderboard rows.
    ``resume``: continue that run directory (checked and recorded by ``fer_bench.engine.resume``) from ``resume_ckpt``
    (default: its last checkpoint; none yet: from the first epoch, splits drawn again)."""
    if spec_of(cfg.method.name).loop == "scenario":  # engine/scenario.py runs it (protocols/benchmark.py dispatches)
        raise ValueError(f"method {cfg.method.name!r} trains as a scenario of steps: run it with "
                         "fer_bench.engine.scenario.run, not the fit loop")
    targets = cross_domain.resolve_targets(cfg) if test else []  # eval_on: checked before training
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    run_dir = resume or new_run_dir(cfg)
    ckpt = (resume_ckpt or default_checkpoint(run_dir)) if resume else None
    method = build_method(cfg)
    init_record.warn_if_random_init(cfg)
    if resume is None:  # after the method: it records resolved values (backbone.*)
        atomic_write_text(run_dir / "config.yaml", to_yaml(cfg))
    needs = method.data_needs()
    needs.test_every_epoch = cfg.method.protocol == "faithful"
    datamodule = FERDataModule(cfg.data, needs, run_dir=run_dir, seed=cfg.seed,
                               splits_from=run_dir / "splits" if ckpt else None)
    if resume and rank_zero_only.rank == 0:
        keep_history(run_dir / "logs" / "metrics.csv", ckpt)
    loggers = build_loggers(cfg, run_dir)
    # faithful: best.ckpt is the epoch of highest test accuracy (the official scripts' choice), reported as
    # best_test_epoch; corrected: the epoch of highest val accuracy.
    monitor = "test_epoch/acc" if needs.test_every_epoch else "val/acc"
    checkpoint = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=monitor, mode="max",
                                 auto_insert_metric_name=False)
    # Lightning >= 2.6 writes save_last's last.ckpt only when a top-k checkpoint is saved in the same step,
    # i.e. a copy of best.ckpt once val/acc stops improving; a monitor-less callback saves every epoch.
    last_checkpoint = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", monitor=None,
                                      save_top_k=1, enable_version_counter=False)
    trainer = build_trainer(cfg, run_dir, loggers, [checkpoint, last_checkpoint, RngState()],
                            method)
    started = time.time()
    try:
        trainer.fit(method, datamodule=datamodule, ckpt_path=str(ckpt) if ckpt else None)
        fit_seconds = time.time() - started
        reports = {kind: _test(cfg, method, datamodule, run_dir, kind, loggers) for kind in CKPT_KINDS} if test else {}
    finally:
        finish_wandb(loggers)
    if test and trainer.is_global_zero:
        # Under ddp_spawn the fit ran in child processes: the checkpoint callback's score, the loop counters
        # and the DataModule's state stayed there (Lightning sends back only the weights and callback_metrics);
        # read them from the files instead.
        states = {kind: torch.load(run_dir / "checkpoints" / f"{kind}.ckpt", map_location="cpu", mmap=True,
                                   weights_only=True) for kind in CKPT_KINDS}
        best_score = states["best"]["callbacks"][checkpoint.state_key]["best_model_score"]
        skipped = run_dir / "skipped.csv"
        facts = init_record.result_facts(cfg, trainer.precision)
        summary = {
            "run_id": run_dir.name, "method": cfg.method.name, "data": cfg.data.name, "seed": cfg.seed,
            **fold_tag(cfg),
            f"best_{monitor.split('/')[0]}_acc": float(best_score) if best_score is not None else None,
            "epochs": states["last"]["epoch"] + 1, "fit_seconds": round(fit_seconds, 1),
            "skipped_items": len(pd.read_csv(skipped)) if skipped.is_file() else 0, **facts,
            **{kind: reports[kind]["metrics"] for kind in CKPT_KINDS},
        }
        rows = [_leaderboard_row(cfg, summary, kind, run_dir) | facts for kind in CKPT_KINDS]
        if needs.test_every_epoch:  # best.ckpt is the test-selected epoch: its row says so
            summary["best_test_epoch"] = best_test_epoch(run_dir / "logs" / "metrics.csv")
            rows[0] |= {"ckpt": "best_test_epoch", "selection": "test (faithful; optimistic)",
                        "selected_epoch": summary["best_test_epoch"]["selected_epoch"]}
        if targets:  # the val-selected checkpoint on every eval_on set
            load_weights(method, run_dir / "checkpoints" / "best.ckpt")
            summary["xdom"] = cross_domain.evaluate(cfg, targets, method, run_dir)
            rows[0] |= summary["xdom"]
        (run_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
        leaderboard.append(Path(cfg.results_dir), rows)
        if targets:
            domain_matrices.write_matrices(Path(cfg.results_dir))
    return run_dir


def best_test_epoch(metrics_csv: Path) -> dict:
    """The paper-style figure: every test metric of the epoch with the highest test accuracy (all from that one
    epoch's weights, extras such as acc7 or ccc_v included)."""
    history = pd.read_csv(metrics_csv).dropna(subset=["test_epoch/acc"])
    best = history.loc[history["test_epoch/acc"].idxmax()]
    scores = {f"test/{k.split('/', 1)[1]}": float(v) for k, v in best.items()
              if k.startswith("test_epoch/") and k != "test_epoch/loss" and pd.notna(v)}
    return scores | {"selected_epoch": int(best["epoch"])}


def _leaderboard_row(cfg: DictConfig, summary: dict, kind: str, run_dir: Path) -> dict:
    return {
        "run_id": summary["run_id"], "suite": cfg.suite or "", "name": cfg.run_name or summary["method"],
        "method": summary["method"], "data": summary["data"], "seed": summary["seed"], **fold_tag(cfg),
        "ckpt": kind, "selection": "val/acc" if kind == "best" else "last epoch",
        **summary[kind], "protocol": cfg.method.protocol, "epochs": summary["epochs"],
        "fit_seconds": summary["fit_seconds"], **provenance(cfg, run_dir), "run_dir": str(run_dir),
    }


def test_run(run_dir: Path, kind: str = "best") -> dict:
    """Re-test a finished run's checkpoint on its saved test split; returns the test metrics."""
    cfg = load_run_config(run_dir)
    cfg.logger.wandb = False
    if cfg.trainer.num_nodes > 1 and "WORLD_SIZE" not in os.environ:  # a cluster run, re-tested outside torchrun
        cfg.trainer.num_nodes, cfg.trainer.devices, cfg.trainer.strategy = 1, 1, "auto"
    method = build_method(cfg)
    datamodule = FERDataModule(cfg.data, method.data_needs(), seed=cfg.seed, splits_from=run_dir / "splits")
    report, _, _ = _test_checkpoint(cfg, method, datamodule, run_dir, kind, [], "retest")
    return report["metrics"]

