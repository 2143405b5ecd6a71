"""FERMethod: what every method shares — evaluation, metric logging, optimizer and schedule from config.

A method subclass builds its networks, implements ``forward`` (the inference path: images → logits) and
``training_step``, and states its ``data_needs()`` (a ``DataNeeds``). Validation and test are the same for every method:
logits from ``forward``, cross-entropy, and the classification metric suite, exact under DDP.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torchmetrics import Metric

from fer_bench.methods import predictions as P
from fer_bench.methods.optim import build_optimizer, build_scheduler
from fer_bench.metrics import ClassificationMetrics
from fer_bench.models.sam import SAM

# "test_epoch": the test split scored after every epoch, only under protocol=faithful (papers that pick the
# best epoch on test); it never selects a checkpoint and is reported apart, flagged as optimistic.
STAGES = ("val", "test", "test_epoch")
VAL_LOADER_STAGES = ("val", "test_epoch")


class FERMethod(pl.LightningModule):
    # True for a method that switches parameters' requires_grad between epochs (e.g. a head-only phase): DDP then
    # has to look for parameters without a gradient in every step.
    ddp_find_unused_parameters = False

    def __init__(self, cfg: DictConfig, class_names: list[str]):
        super().__init__()
        self.cfg = cfg
        self.class_names = list(class_names)
        self.num_classes = len(class_names)
        self.save_hyperparameters({"cfg": OmegaConf.to_container(cfg, resolve=True), "class_names": class_names})
        self.eval_metrics = torch.nn.ModuleDict({s: ClassificationMetrics(self.num_classes) for s in STAGES})
        self.report_path: Path | None = None
        self.predictions_path: Path | None = None  # where the test writes the predictions file (methods/predictions.py)
        self.predictions = P.PredictionCollector()

    # memory layout ---------------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        # ddp_spawn on CPU hands this module to the ranks through shared memory. Lightning un-shares
        # parameters and buffers, not torchmetrics states: every rank would add into the same tensors (counts
        # doubled, a later launch starting from the previous one's counts). Fresh private states per process.
        for module in self.modules():
            if isinstance(module, Metric):
                module.reset()
        if self.cfg.trainer.channels_last:  # NHWC convolutions: faster with oneDNN on CPU and tensor cores on GPU
            self.to(memory_format=torch.channels_last)
        if self.cfg.trainer.compile:
            for module in self.compile_targets():
                if module._compiled_call_impl is None:
                    module.compile()

    def compile_targets(self) -> list[torch.nn.Module]:
        """Networks ``trainer.compile=true`` compiles, in place (checkpoint keys do not change): the modules whose
        ``__call__`` training and inference go through."""
        return [child for child in self.children() if child is not self.eval_metrics]

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        if self.cfg.trainer.channels_last and "image" in batch:
            batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
        return batch

    def inference_outputs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named outputs of the inference path, ``logits`` first: what ``predict`` writes and ``export`` emits.
        Methods with more heads (valence/arousal, AUs) add their outputs (B or B×k tensors)."""
        return {"logits": self(images)}

    # evaluation ----------------------------------------------------------------------------------------------
    def _eval_step(self, batch: dict, stage: str) -> dict[str, torch.Tensor]:
        """Update the stage's metrics; returns the batch's named outputs (``logits`` first, as
        ``inference_outputs``) for the predictions file."""
        logits = self(batch["image"])
        loss = F.cross_entropy(logits, batch["label"])
        self.eval_metrics[stage].update(logits.detach(), batch["label"])
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, sync_dist=True,
                 batch_size=batch["label"].shape[0], add_dataloader_idx=False)
        return {"logits": logits}

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        stages = getattr(self.trainer.datamodule, "val_stages", VAL_LOADER_STAGES)  # no val split: test_epoch only
        self._eval_step(batch, stages[dataloader_idx])

    def test_step(self, batch: dict, batch_idx: int) -> None:
        outputs = self._eval_step(batch, "test")
        if self.predictions_path is not None:
            self.predictions.add(batch["index"], outputs)

    def on_train_start(self) -> None:
        for stage in VAL_LOADER_STAGES:
            self.eval_metrics[stage].reset()  # drop what the sanity check accumulated

    def _log_epoch_metrics(self, stage: str) -> dict[str, float]:
        metric = self.eval_metrics[stage]
        values = {f"{stage}/{k}": v for k, v in metric.compute().items()}
        self.log_dict(values)
        return {k: float(v) for k, v in values.items()}

    def updated_anywhere(self, *metrics: Metric) -> list[bool]:
        """Whether each metric was updated on any process: one answer shared by every rank (a sum over ranks of
        the update counts), so that every rank computes, and syncs, the same metrics. A rank-local count gate
        lets a rank that saw no such label (e.g. no valence) skip a sync the others wait in."""
        counts = torch.tensor([float(m.update_count) for m in metrics], device=self.device)
        return (self.trainer.strategy.reduce(counts, reduce_op="sum") > 0).tolist()

    def on_validation_epoch_end(self) -> None:
        for stage, updated in zip(VAL_LOADER_STAGES, self.updated_anywhere(
                *(self.eval_metrics[s] for s in VAL_LOADER_STAGES)), strict=True):
            if updated:
                self._log_epoch_metrics(stage)
                self.eval_metrics[stage].reset()

    def _gathered_predictions(self):
        """All ranks' collected test outputs as the predictions table on rank 0 (a collective; None elsewhere)."""
        outputs = self.predictions.gather()
        if outputs is None or self.global_rank != 0:
            return None
        records = self.trainer.datamodule.records
        rows = P.split_rows(records, "test")
        return P.prediction_frame(rows, rows["head"].to_numpy(), outputs, P.records_root(records))

    def _predictions_meta(self) -> dict:
        return {"class_names": self.class_names, "root": P.records_root(self.trainer.datamodule.records)}

    def on_test_epoch_end(self) -> None:
        values = self._log_epoch_metrics("test")
        metric = self.eval_metrics["test"]
        per_class = metric.per_class().tolist()
        report = {
            "metrics": values,
            "per_class_acc": dict(zip(self.class_names, per_class, strict=True)),
            "confusion_matrix": metric.confmat().tolist(),
            "class_names": self.class_names,
        }
        metric.reset()
        frame = self._gathered_predictions() if self.predictions_path is not None else None
        if frame is not None:
            P.write_predictions(frame, self.predictions_path, self._predictions_meta())
            report["metrics"] |= P.metric_intervals(frame, self.num_classes, self.cfg.eval, self.cfg.data.cluster_by)
        if self.report_path is not None and self.global_rank == 0:
            self.report_path.parent.mkdir(parents=True, exist_ok=True)
            self.report_path.write_text(json.dumps(report, indent=2))

    # optimisation --------------------------------------------------------------------------------------------
    def manual_step(self, optimizer, loss_fn):
        """One manual-optimisation step on ``loss_fn()`` (a tuple, total loss first); with SAM the same batch is
        recomputed at the perturbed weights for the second pass (Foret et al., ICLR 2021). Returns the first pass."""
        first = loss_fn()
        optimizer.zero_grad()
        self.manual_backward(first[0])
        self._clip(optimizer)
        if isinstance(optimizer.optimizer, SAM):
            optimizer.optimizer.first_step(zero_grad=True)
            self.manual_backward(loss_fn()[0])
            self._clip(optimizer)
            optimizer.optimizer.second_step(zero_grad=True)
        else:
            optimizer.step()
        return first

    def _clip(self, optimizer) -> None:
        """``trainer.gradient_clip_val`` (global norm) for manual optimisation, where Lightning does not clip."""
        if self.cfg.trainer.gradient_clip_val:
            self.clip_gradients(optimizer, gradient_clip_val=self.cfg.trainer.gradient_clip_val,
                                gradient_clip_algorithm="norm")

    def trainable_parameters(self):
        return [p for p in self.parameters() if p.requires_grad]

    def configure_optimizers(self):
        optimizer = build_optimizer(self.trainable_parameters(), self.cfg.optim)
        scheduler = build_scheduler(optimizer, self.cfg.sched, self.cfg.trainer.max_epochs)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
