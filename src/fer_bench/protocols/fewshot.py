"""Few-shot phase (AngusMaiden/complex-FER): from the base model, learn one compound class from K shots (repeated
per epoch, distillation at γ0, no replay), then score it two ways, both reported:

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
from fer_bench.engine.scenario_steps import fit_step, infer
from fer_bench.methods.continual.module import Continual


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


def _one_class(cfg, run_dir: Path, scenario: Scenario, compound: str, shots: int) -> dict[str, float]:
    base = scenario.step_sizes[0]
    rest = [c for c in scenario.classes[base:] if c != compound]
    classes = [*scenario.classes[:base], compound, *rest]  # same rows as the run, so its saved splits apply
    fs_cfg = cfg.copy()
    fs_cfg.method.strategy = "kd_only"  # distillation, no replay
    method = Continual(fs_cfg, classes, base_classes=base)
    weights = torch.load(run_dir / "checkpoints" / "base.ckpt", map_location="cpu", weights_only=True)
    method.backbone.load_state_dict(weights["backbone"])
    method.head.load_state_dict(weights["head"])
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
    fit_step(fs_cfg, method, dm, run_dir, f"fewshot_{shots}shot_{compound.replace(' ', '_')}",
             f.epochs, "val/acc")
    test = dm.datasets["test"]
    index = np.flatnonzero(test.label.numpy() <= base)
    preds = infer(method, test, index, lambda x: method.logits(x).argmax(dim=1)).long().numpy()
    return scores(preds, test.label.numpy()[index], base)


def run_fewshot(cfg, run_dir: Path, scenario: Scenario) -> dict[str, float]:
    """Mean over the first ``fewshot.classes`` compounds of the order, per shot count, under labelled keys."""
    f = cfg.method.fewshot
    base = scenario.step_sizes[0]
    compounds = list(scenario.classes[base:])[: f.classes or None]
    out = {}
    for shots in f.shots:
        per_class = [_one_class(cfg, run_dir, scenario, c, shots) for c in compounds]
        for key in per_class[0]:
            family, name = key.split("_", 1)
            out[f"fewshot_{family}/{shots}shot_{name}"] = float(np.mean([p[key] for p in per_class]))
    return out
