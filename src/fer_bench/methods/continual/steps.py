"""What one continual step trains on, how it is fitted, and the replay-memory update after it (complex-FER's
protocol; AngusMaiden/complex-FER): the bodies of the ``Continual`` module's scenario hooks."""

from __future__ import annotations

import numpy as np

from fer_bench.data.datamodule import FERDataModule
from fer_bench.data.scenario import Scenario, StepData
from fer_bench.methods.continual.memory import budget, per_class
from fer_bench.methods.inference import infer
from fer_bench.methods.scenario import FitStage


def val_split(cfg) -> str:
    """faithful: the held-out test fold steers early stopping (as the official code); corrected: val subjects."""
    return "test" if cfg.method.protocol == "faithful" else "val"


def new_class_redraw(cfg) -> bool:
    subset = cfg.method.new_class_subset or ("redraw" if cfg.method.protocol == "faithful" else "fixed")
    return subset == "redraw"


def memory_budget(cfg, dm: FERDataModule, scenario: Scenario) -> tuple[int, int]:
    """(M, m) over the training images of all the scenario's classes."""
    return budget(len(dm.datasets["train"]), len(scenario.classes), cfg.method.mem_fraction)


def step_data(method, dm: FERDataModule, scenario: Scenario, step: int) -> StepData:
    """Step 0 and joint training: every training image of the seen classes. Compound steps: the memory plus the
    new classes' m-image subsets (all of them for strategies without memory, too: only replay differs)."""
    cfg = method.cfg
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


def fit_plan(method, step: int) -> list[FitStage]:
    """Compound steps: one fit at ``step_epochs`` selected on val accuracy. Base: stage A on val loss, then with
    ``base_finetune_trainable`` stage B from stage A's best epoch (complex-FER's head-then-conv4/conv5 training)."""
    m = method.cfg.method
    if step > 0:
        return [FitStage(f"step{step:02d}", m.step_epochs, "val/acc", patience=m.patience)]
    base = {"epochs": method.cfg.trainer.max_epochs, "monitor": "val/loss", "min_delta": m.base_min_delta,
            "patience": m.patience}
    stages = [FitStage("step00", **base)]
    if m.base_finetune_trainable is not None:
        stages.append(FitStage("step00b", prepare=method.begin_base_finetune, **base))
    return stages


def update_memory(method, dm: FERDataModule, scenario: Scenario, step: int) -> None:
    """After ``step``: trim every class to the next step's per-class budget, then select the classes this step
    added (and, with ``method.psmr.rerank``, every stored class again) — PSMR ranks all of a class's training
    images by the just-trained model's score; random replay draws a seeded subset."""
    kind = method.strategy.memory
    if kind is None:
        return
    cfg = method.cfg
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
