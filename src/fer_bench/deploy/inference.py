"""An inference model: a finished run (saved config, method with checkpoint weights) or a converted weight file
(``fer-bench convert``: its metadata names backbone, classes and input recipe); plus the eval transform."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import torch
from omegaconf import DictConfig

from fer_bench.config import ConfigError, load_run_config
from fer_bench.data.datamodule import DataNeeds
from fer_bench.data.transforms import eval_transform


@dataclass
class RunModel:
    """Everything needed to apply a trained run to new images."""

    run_dir: Path
    cfg: DictConfig
    method: pl.LightningModule
    needs: DataNeeds

    @property
    def class_names(self) -> list[str]:
        return self.method.class_names

    def transform(self):
        return eval_transform(self.needs.image_size, self.needs.mean, self.needs.std)

    @torch.no_grad()
    def outputs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The method's named inference outputs (``logits`` first) for a batch of normalised images."""
        return self.method.inference_outputs(images)


def load_run_model(run_dir: Path, kind: str = "best") -> RunModel:
    """Rebuild a run's method from ``config.yaml`` and load ``checkpoints/<kind>.ckpt`` (weights only)."""
    from fer_bench.engine.runner import build_method, load_weights

    run_dir = Path(run_dir)
    ckpt = run_dir / "checkpoints" / f"{kind}.ckpt"
    if not ckpt.is_file():
        raise ConfigError(f"no checkpoint {ckpt}: ckpt= must name a kind the run saved (best or last)")
    cfg = load_run_config(run_dir)
    method = build_method(cfg)
    load_weights(method, ckpt)
    method.eval()
    return RunModel(run_dir, cfg, method, method.data_needs())


def load_weights_model(path: Path) -> RunModel:
    """A converted network (``fer-bench convert``) as a multitask method: backbone, label space, head layout and
    input recipe come from the file's metadata."""
    from fer_bench.config import build_config
    from fer_bench.engine.runner import build_method
    from fer_bench.models import weights_file

    path = Path(path)
    meta = weights_file.read_meta(path)
    if "backbone" not in meta or "space" not in meta:
        raise ConfigError(f"weights={path}: no fer-bench metadata naming the backbone and classes; give a file "
                          "written by fer-bench convert, or run=<run dir>")
    cfg = build_config(["method=multitask", f"method.weights={path}", f"backbone.name={meta['backbone']}",
                        f"data.space={meta['space']}", "logger.wandb=false"])
    method = build_method(cfg)
    method.eval()
    return RunModel(path, cfg, method, method.data_needs())
