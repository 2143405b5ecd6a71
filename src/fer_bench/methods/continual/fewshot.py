"""Few-shot phase (AngusMaiden/complex-FER), run after the scenario: from the base model, learn one compound class
from K shots (repeated per epoch, distillation at γ0, no replay), then score it two ways, both reported:

- ``fewshot_paper``: accuracy on the new class's test images only (the official metric: no negatives, so an
  "always the new class" model scores 100 %);
- ``fewshot_nway``: (N+1)-way test on the base classes' and the new class's test images — balanced accuracy,
  new-class recall and precision, base-class accuracy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fer_bench.data.datamodule import FERDataModule
from fer_bench.data.scenario import Scenario, StepData
from fer_bench.methods.inference import infer
from fer_bench.methods.scenario import BASE_CKPT, FitStage, StageFit


def scores(preds: np.ndarray, labels: np.ndarray, new: int) -> dict[str, float]:
    """Both few-shot metrics for predictions over classes 0..new (``new`` = the new class's head index)."""
    is_new = labels == new
    recalls = [float((preds[labels == c] == c).mean()) for c in range(new + 1) if (labels == c).any()]
    predicted_new = preds == new
    return {
        "paper_acc": float((preds[is_new] == new).mean()),
        "nway_bacc": float(np.mean(recalls)),
        "nway_new_recall": float((preds[is_new] == new).mean()),
        "nway_new_precision": float((labels[predicted_new] == new).mean()) if predicted_new.any() else 0.0,
        "nway_base_acc": float((preds[~is_new] == labels[~is_new]).mean()),
    }


def _one_class(module_class, cfg, run_dir: Path, scenario: Scenario, compound: str, shots: int,
               fit: StageFit) -> dict[str, float]:
    base = scenario.step_sizes[0]
    rest = [c for c in scenario.classes[base:] if c != compound]
    classes = [*scenario.classes[:base], compound, *rest]  # same rows as the run, so its saved splits apply
    fs_cfg = cfg.copy()
    fs_cfg.method.strategy = "kd_only"  # distillation, no replay
    method = module_class(fs_cfg, classes, base_classes=base)
    method.load_base_state(torch.load(run_dir / "checkpoints" / BASE_CKPT, map_location="cpu", weights_only=True))
    method.begin_step(1, 1)
    needs = method.data_needs()
    needs.classes = tuple(classes)
    dm = FERDataModule(cfg.data, needs, seed=cfg.seed, splits_from=run_dir / "splits")
    dm.setup()
    labels = dm.datasets["train"].label.numpy()
    pool = np.flatnonzero(labels == base)
    if len(pool) < shots:
        raise ValueError(f"few-shot: class {compound!r} has {len(pool)} training images, fewer than {shots} shots")
    picked = np.random.default_rng([cfg.seed, shots, base + scenario.classes.index(compound)]).choice(
        pool, shots, replace=False)
    f = cfg.method.fewshot
    faithful = cfg.method.protocol == "faithful"
    dm.step = StepData(seen=base + 1, fixed=np.repeat(picked, f.repeats), batch_size=f.batch_size,
                       seed=cfg.seed, val_split="test" if faithful else "val",
                       eval_only=[base] if faithful else None)
    fit(method, dm, FitStage(f"fewshot_{shots}shot_{compound.replace(' ', '_')}", f.epochs, "val/acc",
                             patience=cfg.method.patience))
    test = dm.datasets["test"]
    index = np.flatnonzero(test.label.numpy() <= base)
    preds = infer(method, test, index, lambda x: method.logits(x).argmax(dim=1)).long().numpy()
    return scores(preds, test.label.numpy()[index], base)


def run_fewshot(method, run_dir: Path, scenario: Scenario, fit: StageFit) -> dict[str, float]:
    """Mean over the first ``fewshot.classes`` compounds of the order, per shot count, under labelled keys; each
    from a fresh module of ``method``'s class that starts from the run's ``base.ckpt``."""
    cfg = method.cfg
    f = cfg.method.fewshot
    base = scenario.step_sizes[0]
    compounds = list(scenario.classes[base:])[: f.classes or None]
    out = {}
    for shots in f.shots:
        per_class = [_one_class(type(method), cfg, run_dir, scenario, c, shots, fit) for c in compounds]
        for key in per_class[0]:
            family, name = key.split("_", 1)
            out[f"fewshot_{family}/{shots}shot_{name}"] = float(np.mean([p[key] for p in per_class]))
    return out
