"""Continual basic → compound FER: knowledge distillation + Predictive Sorting Memory Replay (Maiden & Nakisa,
arXiv 2308.06197; AngusMaiden/complex-FER).

One LightningModule for the method and its baselines; a ``Strategy`` only switches distillation and the memory's
selection rule. The module owns the student (backbone + expandable head), the frozen base-model teacher, the replay
memory and the scenario position; all of them travel in checkpoints (``on_save_checkpoint``), so a killed run
resumes mid-scenario and ``ddp_spawn`` ranks receive the same state. The step loop is the engine's scenario loop
(``fer_bench.engine.scenario``); this module supplies its hooks (``fer_bench.methods.scenario.ScenarioMethod``),
whose bodies live in ``steps.py`` (step data, fit plan, memory update) and ``fewshot.py`` (the few-shot phase).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fer_bench.data.datamodule import DataNeeds, FERDataModule
from fer_bench.data.readers import read_records
from fer_bench.data.scenario import Scenario, StepData, build_scenario, class_keys
from fer_bench.methods.continual import fewshot, steps
from fer_bench.methods.continual.memory import ReplayMemory
from fer_bench.methods.optim import build_optimizer, build_scheduler
from fer_bench.methods.scenario import FitStage, ScenarioMethod, StageFit
from fer_bench.models import backbones, preprocessing
from fer_bench.models.heads import ExpandableHead


@dataclass(frozen=True)
class Strategy:
    """What a variant changes: distillation from the base model, how the memory selects, joint training."""

    kd: bool
    memory: str | None  # psmr | random | None
    joint: bool = False


STRATEGIES: dict[str, Strategy] = {
    "psmr_kd": Strategy(kd=True, memory="psmr"),
    "finetune": Strategy(kd=False, memory=None),
    "random_replay": Strategy(kd=False, memory="random"),
    "kd_only": Strategy(kd=True, memory=None),
    "joint": Strategy(kd=False, memory=None, joint=True),
}
def kd_gamma(i: int, gamma0: float = 0.1) -> float:
    """Distillation weight of compound step i (0-based from the first compound step): γ0·exp(−i / (1 + e))."""
    return gamma0 * math.exp(-i / (1 + math.e))


def soft_ce(target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of −Σ target·log softmax(logits), from the logits (no probability clipping)."""
    return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def kd_loss(student: torch.Tensor, teacher: torch.Tensor | None, labels: torch.Tensor, gamma: float,
            T: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(1 − γ)·CE(y, z_s) + γ·CE(softmax(pad(z_t)/T), z_s/T), both from logits; the teacher's logits are
    zero-padded on the right to the student's K outputs; no T² factor. Returns (total, classification,
    distillation).

    The official Keras ``train_step`` runs in graph mode, where categorical cross-entropy on a softmax output is
    computed from the softmax's logits: no 1e-7 probability clipping, so a confidently wrong sample keeps its
    gradient (AngusMaiden/complex-FER ``ContinualLearner``).
    """
    cls = F.cross_entropy(student, labels)
    if teacher is None or gamma == 0:
        return cls, cls, torch.zeros_like(cls)
    padded = F.pad(teacher, (0, student.shape[1] - teacher.shape[1]))
    kd = soft_ce((padded / T).softmax(dim=1), student / T)
    return (1 - gamma) * cls + gamma * kd, cls, kd


class Continual(ScenarioMethod):
    def __init__(self, cfg, class_names, base_classes: int | None = None):
        super().__init__(cfg, class_names)
        m = cfg.method
        self.strategy = STRATEGIES[m.strategy]
        b = cfg.backbone
        self.backbone, own = backbones.create(b.name, pretrained=b.pretrained, weights=b.weights,
                                              drop_rate=b.drop_rate, global_pool=m.global_pool)
        if not m.normalize:  # pixel / 255 (the official code); a converted file's mean/std does not override it
            own = replace(own, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
        self.info = preprocessing.for_config(cfg, own, b.weights if m.normalize else None)
        self.head = ExpandableHead(self.info.num_features, base_classes or self.num_classes, tuple(m.head_hidden),
                                   m.head_dropout, m.head_activation)
        self.teacher: nn.ModuleDict | None = None
        if self.strategy.kd:
            self.teacher = nn.ModuleDict({"backbone": backbones.create(b.name, global_pool=m.global_pool)[0],
                                          "head": ExpandableHead(self.info.num_features, self.head.num_classes,
                                                                 tuple(m.head_hidden), m.head_dropout,
                                                                 m.head_activation)})
            self.teacher.requires_grad_(False)
        self.step = 0
        self.base_finetune = False  # stage B of the base training (method.base_finetune_trainable)
        self.memory = ReplayMemory()

    def data_needs(self) -> DataNeeds:
        return DataNeeds(self.info.image_size, self.info.mean, self.info.std, base_space=self.cfg.method.base_space)

    def compile_targets(self) -> list[nn.Module]:
        return [self.backbone, self.head]

    # networks --------------------------------------------------------------------------------------------------
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """The student's K logits (K = classes seen so far)."""
        return self.head(self.backbone(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits over the whole scenario's classes; classes not learnt yet get −inf (never predicted)."""
        logits = self.logits(images)
        return F.pad(logits, (0, self.num_classes - logits.shape[1]), value=float("-inf"))

    @torch.no_grad()
    def teacher_logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.teacher["head"](self.teacher["backbone"](images))

    def train(self, mode: bool = True):
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        if mode:
            for module in self._frozen_batch_norms():
                module.eval()
        return self

    def _frozen_batch_norms(self) -> list[nn.Module]:
        """The backbone's BatchNorm layers held fixed (statistics and affine): from step 1 on with ``freeze_bn``, in
        the base step with ``base_freeze_bn``."""
        m = self.cfg.method
        if not (m.base_freeze_bn if self.step == 0 else m.freeze_bn):
            return []
        return [m for m in self.backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    # scenario hooks (fer_bench.methods.scenario) ---------------------------------------------------------------
    @classmethod
    def scenario_of(cls, cfg) -> Scenario:
        """The class-incremental scenario of this run: its class order is ``cfg.seed`` (< ``method.n_orders``)."""
        m = cfg.method
        records, _ = read_records(cfg.data)
        return build_scenario(class_keys(records, m.base_space), m.base_space, cfg.seed, m.n_orders, m.order_seed,
                              m.increment, m.max_steps)

    @classmethod
    def shares_base(cls, cfg) -> bool:
        return bool(cfg.method.share_base)

    @classmethod
    def selects_base_fold(cls, cfg) -> bool:
        return cfg.method.base_fold == "best" and cfg.data.folds is not None

    def step_data(self, dm: FERDataModule, scenario: Scenario, step: int) -> StepData:
        return steps.step_data(self, dm, scenario, step)

    def fit_plan(self, step: int) -> list[FitStage]:
        return steps.fit_plan(self, step)

    def after_step(self, dm: FERDataModule, scenario: Scenario, step: int) -> None:
        steps.update_memory(self, dm, scenario, step)

    def stops_after(self) -> int | None:
        return self.cfg.method.stop_after

    def base_state(self) -> dict:
        return {"backbone": self.backbone.state_dict(), "head": self.head.state_dict()}

    def load_base_state(self, state: dict) -> None:
        self.backbone.load_state_dict(state["backbone"])
        self.head.load_state_dict(state["head"])

    def after_scenario(self, run_dir: Path, scenario: Scenario, fit: StageFit) -> dict[str, dict[str, float]]:
        """The few-shot phase (``method.fewshot.enabled``), from the run's base model."""
        enabled = self.cfg.method.fewshot.enabled
        return {"fewshot": fewshot.run_fewshot(self, run_dir, scenario, fit) if enabled else {}}

    def row_label(self) -> str:
        return f"continual/{self.cfg.method.strategy}"

    def selection_note(self) -> str:
        return "test fold per step (faithful; optimistic)" if self.cfg.method.protocol == "faithful" \
            else "val per step"

    def summary_facts(self) -> dict:
        return {"strategy": self.cfg.method.strategy,
                "memory_per_class": {str(c): len(v) for c, v in self.memory.slots.items()}}

    def wants_gradcam(self) -> bool:
        return bool(self.cfg.method.gradcam)

    def begin_step(self, step: int, new_classes: int) -> None:
        """Enter ``step``: from step 1 on, snapshot the base model as teacher (once), grow the head by
        ``new_classes`` and set the trainable parameters."""
        if step > 0 and self.step == 0 and self.teacher is not None:
            self.teacher["backbone"].load_state_dict(self.backbone.state_dict())
            self.teacher["head"].load_state_dict(self.head.state_dict())
        if step > 0:
            self.head.grow(new_classes)
        self.step = step
        self.base_finetune = False
        m = self.cfg.method
        self._set_trainable(m.base_trainable if step == 0 else m.step_trainable)

    def begin_base_finetune(self) -> None:
        """Stage B of the base training: ``method.base_finetune_trainable`` at ``method.base_finetune_lr``."""
        self.base_finetune = True
        self._set_trainable(self.cfg.method.base_finetune_trainable)

    def _set_trainable(self, prefixes: list[str] | None) -> None:
        """Backbone parameters under ``prefixes`` (all with None) trainable, except frozen BatchNorm layers."""
        for name, param in self.backbone.named_parameters():
            param.requires_grad_(prefixes is None or name.startswith(tuple(prefixes)))
        for module in self._frozen_batch_norms():
            module.requires_grad_(False)

    def gamma(self) -> float:
        if not self.strategy.kd or self.step == 0:
            return 0.0
        return kd_gamma(self.step - 1, self.cfg.method.kd.gamma0)

    def continual_state(self) -> dict:
        return {"step": self.step, "num_outputs": self.head.num_classes, "memory": self.memory.state_dict()}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["continual"] = self.continual_state()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Resize the head and restore position and memory before the weights are loaded."""
        state = checkpoint["continual"]
        self.head.resize(state["num_outputs"])
        self.step = state["step"]
        self.memory.load_state_dict(state["memory"])

    def on_train_start(self) -> None:
        """Enter training mode (``train`` above: frozen BatchNorm after step 0, teacher in eval). Lightning keeps
        the mode a module arrives in, and a step arrives in eval mode from the previous step's inference, but a
        resumed run's or the few-shot phase's fresh module in train mode, teacher included."""
        super().on_train_start()
        self.train()

    def on_fit_start(self) -> None:
        """Under DDP, every rank must replay the same memory."""
        if self.trainer.world_size > 1:
            digests = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(digests, self.memory.digest())
            if len(set(digests)) != 1:
                raise RuntimeError(f"replay memory differs across ranks: {digests}")

    # training ---------------------------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        images, labels = batch["image"], batch["label"]
        student = self.logits(images)
        gamma = self.gamma()
        teacher = self.teacher_logits(images) if gamma > 0 else None
        loss, cls, kd = kd_loss(student, teacher, labels, gamma, self.cfg.method.kd.T)
        if self.step == 0 and self.cfg.method.l2 > 0:  # Keras kernel regularisers: base phase only
            loss = loss + self.l2_penalty()
        acc = (student.argmax(1) == labels).float().mean()
        self.log_dict({"train/loss": loss, "train/cls": cls, "train/kd": kd, "train/acc": acc},
                      batch_size=len(labels))
        return loss

    def l2_penalty(self) -> torch.Tensor:
        """``method.l2`` × Σ w² over the kernels of the hidden Dense layers (complex-FER's l2(1e-5) on Dense 512
        and Dense 32; the output layer has none)."""
        return self.cfg.method.l2 * sum((layer.weight ** 2).sum() for layer in self.head.body.modules()
                                        if isinstance(layer, nn.Linear))

    def configure_optimizers(self):
        optim_cfg = self.cfg.optim.copy()
        if self.step > 0:
            optim_cfg.lr = self.cfg.method.step_lr
        elif self.base_finetune:
            optim_cfg.lr = self.cfg.method.base_finetune_lr
        optimizer = build_optimizer(self.trainable_parameters(), optim_cfg)
        scheduler = build_scheduler(optimizer, self.cfg.sched, self.trainer.max_epochs)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    # memory -----------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def class_scores(self, images: torch.Tensor, cls: int) -> torch.Tensor:
        """PSMR's score of each image for class ``cls``: the raw logit, or its softmax probability."""
        logits = self.logits(images)
        return logits[:, cls] if self.cfg.method.psmr.score == "logit" else logits.softmax(dim=1)[:, cls]
