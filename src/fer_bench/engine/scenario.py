"""The continual scenario loop: for each step, grow the head, fit, restore the best epoch, update the memory,
test all seen classes (one row of R), and save a scenario checkpoint; then CL metrics, plots, few-shot, Grad-CAM.

A bench seed is a class-order index. ``checkpoints/scenario.ckpt`` holds the weights, head size, memory, step and
the rows of R so far: ``resume=<run dir>`` continues after the last finished step and gives the same final matrix,
because every step reseeds from ``(seed, step)``. ``checkpoints/base.ckpt`` keeps the base model for few-shot.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from fer_bench.atomic import atomic_save, atomic_write_text
from fer_bench.config import to_yaml
from fer_bench.data.datamodule import FERDataModule
from fer_bench.data.readers import read_records
from fer_bench.data.scenario import Scenario, build_scenario, class_keys
from fer_bench.engine import init_record
from fer_bench.engine.loggers import build_loggers, finish_wandb, log_images
from fer_bench.engine.resume import SCENARIO_CKPT, read_checkpoint
from fer_bench.engine.runner import new_run_dir
from fer_bench.engine.scenario_steps import evaluate, fit_step, step_data, update_memory
from fer_bench.methods import predictions as P
from fer_bench.methods.continual.module import Continual
from fer_bench.metrics import continual as clm
from fer_bench.metrics.classification import (
    accuracy_from_confmat,
    confusion_matrix,
    f1_from_confmat,
    uar_from_confmat,
)
from fer_bench.results import leaderboard
from fer_bench.results.plots import accuracy_matrix_png, confusion_matrix_png
from fer_bench.results.provenance import provenance


def scenario_of(cfg: DictConfig) -> Scenario:
    """The class-incremental scenario of this run: its class order is ``cfg.seed``."""
    m = cfg.method
    records, _ = read_records(cfg.data)
    return build_scenario(class_keys(records, m.base_space), m.base_space, cfg.seed, m.n_orders, m.order_seed,
                          m.increment, m.max_steps)


def _setup(cfg: DictConfig, scenario: Scenario, run_dir: Path, splits_from: Path | None):
    method = Continual(cfg, list(scenario.classes), base_classes=scenario.step_sizes[0])
    needs = method.data_needs()
    needs.classes = scenario.classes
    dm = FERDataModule(cfg.data, needs, run_dir=run_dir, seed=cfg.seed, splits_from=splits_from)
    dm.prepare_data()
    dm.setup()
    return method, dm


def _save(method: Continual, path: Path, extra: dict) -> None:
    atomic_save({"state_dict": method.state_dict(), "continual": method.continual_state(), **extra}, path)


def run(cfg: DictConfig, resume: Path | None = None, base_from: Path | None = None) -> Path:
    """Run (or resume) one class order's scenario; returns the run directory. ``base_from``: a ``base.ckpt`` whose
    base model replaces step 0's training (``method.share_base``)."""
    run_dir = resume or new_run_dir(cfg)
    scenario = scenario_of(cfg)
    ckpt = run_dir / "checkpoints" / SCENARIO_CKPT
    resumed = resume is not None and ckpt.is_file()
    pl.seed_everything(cfg.seed, workers=True, verbose=False)  # the initial weights
    method, dm = _setup(cfg, scenario, run_dir, run_dir / "splits" if resumed else None)
    init_record.warn_if_random_init(cfg)
    if resume is None:  # after the method: it records resolved values (backbone.*); a resume keeps the saved
        atomic_write_text(run_dir / "config.yaml", to_yaml(cfg))  # config (fer_bench.engine.resume writes changes)
    rows, sizes, fit_seconds, start = [], [], 0.0, 0
    if resumed:
        state = read_checkpoint(ckpt, run_dir)
        method.load_scenario_checkpoint(state)
        rows, sizes, fit_seconds, start = state["rows"], state["sizes"], state["fit_seconds"], state["step"] + 1
    result = None
    for step in range(start, scenario.num_steps):
        pl.seed_everything(cfg.seed * 1000 + step, workers=True, verbose=False)
        method.begin_step(step, scenario.step_sizes[step])
        dm.step = step_data(cfg, method, dm, scenario, step)
        started = time.time()
        epochs = cfg.trainer.max_epochs if step == 0 else cfg.method.step_epochs
        if step == 0 and base_from is not None:  # the bench's shared base model
            shared = torch.load(base_from, map_location="cpu", weights_only=True)
            method.backbone.load_state_dict(shared["backbone"])
            method.head.load_state_dict(shared["head"])
        elif step == 0:  # base: stage A, then (base_finetune_trainable) stage B from its best epoch
            fit_step(cfg, method, dm, run_dir, "step00", epochs, "val/loss", cfg.method.base_min_delta)
            if cfg.method.base_finetune_trainable is not None:
                method.begin_base_finetune()
                fit_step(cfg, method, dm, run_dir, "step00b", epochs, "val/loss", cfg.method.base_min_delta)
        else:
            fit_step(cfg, method, dm, run_dir, f"step{step:02d}", epochs, "val/acc")
        fit_seconds += time.time() - started
        update_memory(cfg, method, dm, scenario, step)
        result = evaluate(method, dm, scenario, step)
        rows.append(result["row"])
        sizes = result["sizes"]
        if step == 0:
            atomic_save({"backbone": method.backbone.state_dict(), "head": method.head.state_dict()},
                        run_dir / "checkpoints" / "base.ckpt")
        _save(method, ckpt, {"step": step, "rows": rows, "sizes": sizes, "fit_seconds": fit_seconds})
        if cfg.method.stop_after is not None and step >= cfg.method.stop_after:
            return run_dir
    if result is None:  # resumed after the last step: re-score the final model
        result = evaluate(method, dm, scenario, scenario.num_steps - 1)
    _report(cfg, method, dm, scenario, run_dir, rows, sizes, result, fit_seconds, base_from)
    return run_dir


def cl_metrics(rows: list[list[float]], sizes: list[int]) -> dict[str, float]:
    """Every continual metric of one run (sample-weighted A_i; forgetting = Chaudhry, plus Avalanche's)."""
    out = clm.summary(rows, sizes)
    out["cl/new_acc"] = clm.new_acc(rows)
    out["cl/overall_acc"] = out["cl/avg_inc_acc"]  # complex-FER's figure = this averaged over class orders
    old_new = clm.old_new_accuracies(rows, sizes)
    out["cl/old_acc_final"] = old_new[-1][0] if old_new else float("nan")
    return out


def _final_confmat(result: dict, scenario: Scenario) -> torch.Tensor:
    seen = scenario.seen(scenario.num_steps - 1)
    return confusion_matrix(torch.as_tensor(result["preds"]), torch.as_tensor(result["labels"]), seen)


def _final_predictions(cfg, dm, scenario: Scenario, run_dir: Path, result: dict) -> dict:
    """Write ``predictions_final.parquet`` (the last step's model on the test images of all seen classes);
    returns the intervals of the final test metrics."""
    outputs = P.batch_outputs(torch.as_tensor(result["index"]), {"logits": result["logits"]})
    rows = P.split_rows(dm.records, "test")
    root = P.records_root(dm.records)
    frame = P.prediction_frame(rows, rows["head"].to_numpy(), outputs, root)
    seen = scenario.seen(scenario.num_steps - 1)
    P.write_predictions(frame, run_dir / P.file_name("final"), {"class_names": list(scenario.classes[:seen]),
                                                               "root": root})
    return P.metric_intervals(frame, seen, cfg.eval, cfg.data.cluster_by)


def _report(cfg, method, dm, scenario, run_dir, rows, sizes, result, fit_seconds, base_from=None) -> None:
    strategy = cfg.method.strategy
    names = [", ".join(scenario.classes[c] for c in scenario.new_classes(s)) for s in range(scenario.num_steps)]
    names[0] = f"base ({scenario.step_sizes[0]})"
    metrics = cl_metrics(rows, sizes)
    cm = _final_confmat(result, scenario)
    final = {"test/acc": float(accuracy_from_confmat(cm)), "test/uar": float(uar_from_confmat(cm)),
             "test/f1": float(f1_from_confmat(cm))}
    extra = {}
    if cfg.method.fewshot.enabled:
        from fer_bench.protocols.fewshot import run_fewshot

        extra = run_fewshot(cfg, run_dir, scenario)
    if rank_zero_only.rank != 0:
        return
    intervals = _final_predictions(cfg, dm, scenario, run_dir, result)
    plots = {"plots/acc_matrix": accuracy_matrix_png(
        rows, names, run_dir / "plots" / "acc_matrix.png",
        f"{strategy} on {cfg.data.name}, order {cfg.seed}: avg inc acc {metrics['cl/avg_inc_acc']:.3f}")}
    plots["plots/confusion_final"] = confusion_matrix_png(
        cm.tolist(), list(scenario.classes[: len(cm)]), run_dir / "plots" / "confusion_final.png",
        f"{strategy} after the last step: acc {final['test/acc']:.3f}")
    if cfg.method.gradcam:
        from fer_bench.results.gradcam import gradcam_grid

        plots["plots/gradcam"] = gradcam_grid(method, dm.eval_view("test"), list(scenario.classes),
                                              run_dir / "plots" / "gradcam.png")
    facts = init_record.result_facts(cfg, init_record.fitted_precision(method, cfg))
    summary = {
        "run_id": run_dir.name, "method": cfg.method.name, "strategy": strategy, "data": cfg.data.name,
        "seed": cfg.seed, "order": list(scenario.classes), "step_sizes": list(scenario.step_sizes),
        "acc_matrix": rows, "test_per_task": sizes, "incremental_acc": clm.incremental_accuracies(rows, sizes).tolist(),
        "old_new_acc": clm.old_new_accuracies(rows, sizes), "forgetting_definition":
            "cl/forgetting = Chaudhry et al. 2018: mean over old tasks of (best earlier accuracy - final accuracy); "
            "cl/forgetting_first = Avalanche: mean of (accuracy right after learning - final accuracy)",
        "cl": metrics, "final": final | intervals, "fewshot": extra, "fit_seconds": round(fit_seconds, 1),
        "memory_per_class": {str(c): len(v) for c, v in method.memory.slots.items()}, **facts,
        "base_from": str(base_from) if base_from else None,
    }
    (run_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
    selection = "test fold per step (faithful; optimistic)" if cfg.method.protocol == "faithful" else "val per step"
    row = {"run_id": run_dir.name, "suite": cfg.suite or "", "name": cfg.run_name or f"continual/{strategy}",
           "method": f"continual/{strategy}", "data": cfg.data.name, "seed": cfg.seed, "ckpt": "final",
           "selection": selection, **final, **intervals, **metrics, **extra, "protocol": cfg.method.protocol,
           "steps": scenario.num_steps, "fit_seconds": round(fit_seconds, 1), **provenance(cfg, run_dir),
           "run_dir": str(run_dir), **facts}
    leaderboard.append(Path(cfg.results_dir), [row])
    # The CSV logs are per step (logs/stepNN); the run-level summary goes to W&B when enabled.
    loggers = [lg for lg in build_loggers(cfg, run_dir) if not isinstance(lg, CSVLogger)]
    try:
        for logger in loggers:
            logger.log_metrics({k: v for k, v in {**metrics, **final, **extra}.items() if np.isfinite(v)})
            logger.save()
        log_images(loggers, plots)
    finally:
        finish_wandb(loggers)


def bench(cfg: DictConfig, resume: Path | None = None) -> list[Path]:
    """Every seed (= class order) in ``cfg.seeds``; with ``resume``, finish that one run."""
    if resume is not None:
        return [run(cfg, resume)]
    run_dirs: list[Path] = []
    for seed in cfg.seeds:
        seed_cfg = cfg.copy()
        seed_cfg.seed = int(seed)
        shared = run_dirs[0] / "checkpoints" / "base.ckpt" if cfg.method.share_base and run_dirs else None
        run_dirs.append(run(seed_cfg, base_from=shared))
    return run_dirs
