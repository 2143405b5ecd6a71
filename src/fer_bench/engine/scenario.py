"""The scenario loop, for methods whose spec says ``loop="scenario"`` (class-incremental learning): for each step,
the method's hooks (``fer_bench.methods.scenario.ScenarioMethod``) say what to train on and how; the loop fits,
restores the best epoch, tests all seen classes (one row of the accuracy matrix R) and saves a scenario
checkpoint; then continual metrics, plots, the method's extra protocols, metrics.json and the leaderboard row.

A bench seed is the scenario's seed (e.g. a class-order index). ``checkpoints/scenario.ckpt`` holds the
weights, the method's scenario state (``on_save_checkpoint``), the step and the rows of R so far:
``resume=<run dir>`` continues after the last finished step and gives the same final matrix, because every step
reseeds from ``(seed, step)``. ``checkpoints/base.ckpt`` keeps the base model (``base_state()`` after step 0).
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
from fer_bench.data.scenario import Scenario
from fer_bench.engine import init_record
from fer_bench.engine.loggers import build_loggers, finish_wandb, log_images
from fer_bench.engine.resume import SCENARIO_CKPT, read_checkpoint
from fer_bench.engine.runner import new_run_dir
from fer_bench.engine.scenario_steps import evaluate, fit_step
from fer_bench.methods import predictions as P
from fer_bench.methods import spec_of
from fer_bench.methods.scenario import BASE_CKPT, ScenarioMethod
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


def method_class(cfg: DictConfig) -> type[ScenarioMethod]:
    """The module class of ``cfg.method.name``, which must implement the scenario hooks."""
    spec = spec_of(cfg.method.name)
    if spec.loop != "scenario" or not issubclass(cls := spec.module_class(), ScenarioMethod):
        raise TypeError(f"method {spec.key!r} is not a scenario method: its spec needs loop='scenario' and its "
                        f"module ({spec.module}) must subclass fer_bench.methods.scenario.ScenarioMethod")
    return cls


def scenario_of(cfg: DictConfig) -> Scenario:
    """The scenario of this run, as the method builds it from ``cfg``."""
    return method_class(cfg).scenario_of(cfg)


def _setup(cfg: DictConfig, scenario: Scenario, run_dir: Path, splits_from: Path | None):
    method = spec_of(cfg.method.name).build(cfg, list(scenario.classes), base_classes=scenario.step_sizes[0])
    needs = method.data_needs()
    needs.classes = scenario.classes
    dm = FERDataModule(cfg.data, needs, run_dir=run_dir, seed=cfg.seed, splits_from=splits_from)
    dm.prepare_data()
    dm.setup()
    return method, dm


def _save(method: ScenarioMethod, path: Path, extra: dict) -> None:
    checkpoint = {"state_dict": method.state_dict()}
    method.on_save_checkpoint(checkpoint)  # the method's scenario state (head size, memory, ...)
    atomic_save({**checkpoint, **extra}, path)


def _fit_step(method: ScenarioMethod, dm: FERDataModule, run_dir: Path, step: int, base_from: Path | None) -> None:
    """Step 0 of a later seed with a shared base: take over that base model; otherwise the method's fit plan."""
    if step == 0 and base_from is not None:
        method.load_base_state(torch.load(base_from, map_location="cpu", weights_only=True))
        return
    for stage in method.fit_plan(step):
        if stage.prepare is not None:
            stage.prepare()
        fit_step(method, dm, run_dir, stage)


def run(cfg: DictConfig, resume: Path | None = None, base_from: Path | None = None, last_step: int | None = None,
        base_fold: dict | None = None) -> Path:
    """Run (or resume) one seed's scenario; returns the run directory. ``base_from``: a ``base.ckpt`` whose
    base model replaces step 0's training (the method's ``shares_base``); ``last_step``: stop after that step (a
    resumable partial run); ``base_fold``: how the base model's fold was chosen, recorded in ``metrics.json``."""
    scenario = scenario_of(cfg)  # refuses a bad config before the run directory exists
    run_dir = resume or new_run_dir(cfg)
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
        dm.step = method.step_data(dm, scenario, step)
        started = time.time()
        _fit_step(method, dm, run_dir, step, base_from)
        fit_seconds += time.time() - started
        method.after_step(dm, scenario, step)
        result = evaluate(method, dm, scenario, step)
        rows.append(result["row"])
        sizes = result["sizes"]
        if step == 0:
            atomic_save(method.base_state(), run_dir / "checkpoints" / BASE_CKPT)
        _save(method, ckpt, {"step": step, "rows": rows, "sizes": sizes, "fit_seconds": fit_seconds})
        stops = [s for s in (method.stops_after(), last_step) if s is not None]
        if stops and step >= min(stops):
            return run_dir
    if result is None:  # resumed after the last step: re-score the final model
        result = evaluate(method, dm, scenario, scenario.num_steps - 1)
    _report(cfg, method, dm, scenario, run_dir, rows, sizes, result, fit_seconds, base_from, base_fold)
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


def _report(cfg, method: ScenarioMethod, dm, scenario, run_dir, rows, sizes, result, fit_seconds,
            base_from=None, base_fold=None) -> None:
    label = method.row_label()
    names = [", ".join(scenario.classes[c] for c in scenario.new_classes(s)) for s in range(scenario.num_steps)]
    names[0] = f"base ({scenario.step_sizes[0]})"
    metrics = cl_metrics(rows, sizes)
    cm = _final_confmat(result, scenario)
    final = {"test/acc": float(accuracy_from_confmat(cm)), "test/uar": float(uar_from_confmat(cm)),
             "test/f1": float(f1_from_confmat(cm))}
    sections = method.after_scenario(run_dir, scenario, lambda m, d, stage: fit_step(m, d, run_dir, stage))
    extra = {k: v for section in sections.values() for k, v in section.items()}
    if rank_zero_only.rank != 0:
        return
    intervals = _final_predictions(cfg, dm, scenario, run_dir, result)
    plots = {"plots/acc_matrix": accuracy_matrix_png(
        rows, names, run_dir / "plots" / "acc_matrix.png",
        f"{label} on {cfg.data.name}, order {cfg.seed}: avg inc acc {metrics['cl/avg_inc_acc']:.3f}")}
    plots["plots/confusion_final"] = confusion_matrix_png(
        cm.tolist(), list(scenario.classes[: len(cm)]), run_dir / "plots" / "confusion_final.png",
        f"{label} after the last step: acc {final['test/acc']:.3f}")
    if method.wants_gradcam():
        from fer_bench.results.gradcam import gradcam_grid

        plots["plots/gradcam"] = gradcam_grid(method, dm.eval_view("test"), list(scenario.classes),
                                              run_dir / "plots" / "gradcam.png")
    facts = init_record.result_facts(cfg, init_record.fitted_precision(method, cfg))
    summary = {
        "run_id": run_dir.name, "method": cfg.method.name, **method.summary_facts(), "data": cfg.data.name,
        "seed": cfg.seed, "order": list(scenario.classes), "step_sizes": list(scenario.step_sizes),
        "acc_matrix": rows, "test_per_task": sizes, "incremental_acc": clm.incremental_accuracies(rows, sizes).tolist(),
        "old_new_acc": clm.old_new_accuracies(rows, sizes), "forgetting_definition":
            "cl/forgetting = Chaudhry et al. 2018: mean over old tasks of (best earlier accuracy - final accuracy); "
            "cl/forgetting_first = Avalanche: mean of (accuracy right after learning - final accuracy)",
        "cl": metrics, "final": final | intervals, **sections, "fit_seconds": round(fit_seconds, 1), **facts,
        "base_from": str(base_from) if base_from else None, **({"base_fold": base_fold} if base_fold else {}),
    }
    (run_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
    row = {"run_id": run_dir.name, "suite": cfg.suite or "", "name": cfg.run_name or label,
           "method": label, "data": cfg.data.name, "seed": cfg.seed, "ckpt": "final",
           "selection": method.selection_note(), **final, **intervals, **metrics, **extra,
           "protocol": cfg.method.protocol, "steps": scenario.num_steps, "fit_seconds": round(fit_seconds, 1),
           **provenance(cfg, run_dir), "run_dir": str(run_dir), **facts}
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


def best_base_fold(cfg: DictConfig) -> tuple[DictConfig, Path, dict]:
    """Step 0 on every subject fold (the first seed, each run stopped after step 0), then the fold whose base model
    scores best on its held-out fold: (``cfg`` on that fold, its ``base.ckpt``, the record of the choice)."""
    accuracies, run_dirs = [], []
    name = f"{cfg.run_name or f'{cfg.method.name}-{cfg.data.name}'}-base"  # apart from the continued runs' folders
    for fold in range(cfg.data.folds):
        fold_cfg = cfg.copy()
        fold_cfg.data.fold, fold_cfg.seed, fold_cfg.run_name = fold, int(cfg.seeds[0]), name
        run_dir = run(fold_cfg, last_step=0)
        state = read_checkpoint(run_dir / "checkpoints" / SCENARIO_CKPT, run_dir)
        accuracies.append(float(state["rows"][0][0]))
        run_dirs.append(run_dir)
    best = int(np.argmax(accuracies))
    chosen = cfg.copy()
    chosen.data.fold = best
    record = {"selected": best, "base_acc": accuracies, "base_runs": [d.name for d in run_dirs],
              "rule": "argmax over folds of the base model's accuracy on its held-out fold (selection = test)"}
    return chosen, run_dirs[best] / "checkpoints" / BASE_CKPT, record


def bench(cfg: DictConfig, resume: Path | None = None) -> list[Path]:
    """Every seed in ``cfg.seeds``; with ``resume``, finish that one run. With the method's ``shares_base``,
    later seeds start from the first seed's base model; with its ``selects_base_fold`` (and subject folds), every
    seed continues on the best base fold from that fold's base model."""
    if resume is not None:
        return [run(cfg, resume)]
    shared, base_fold = None, None
    if method_class(cfg).selects_base_fold(cfg):
        cfg, shared, base_fold = best_base_fold(cfg)
    shares_base = method_class(cfg).shares_base(cfg)
    run_dirs: list[Path] = []
    for seed in cfg.seeds:
        seed_cfg = cfg.copy()
        seed_cfg.seed = int(seed)
        if shared is None and shares_base and run_dirs:
            shared = run_dirs[0] / "checkpoints" / BASE_CKPT
        run_dirs.append(run(seed_cfg, base_from=shared, base_fold=base_fold))
    return run_dirs
