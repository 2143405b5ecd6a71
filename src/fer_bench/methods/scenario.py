"""The contract between the engine's scenario loop (``fer_bench.engine.scenario``) and a method whose
``MethodSpec.loop`` is ``"scenario"``: a sequence of steps, each adding classes to one model (class-incremental
learning), with one accuracy-matrix row per step.

The engine owns what every such method shares: run directory, seeding per step (``seed * 1000 + step``), fitting
a stage with early stopping and best-epoch restore, testing all classes seen so far, the scenario checkpoint
(resume after the last finished step), continual metrics, plots, predictions and the leaderboard row. The method
owns the rest through the hooks of :class:`ScenarioMethod`; subclass it (it is a :class:`FERMethod`) and register
a spec with ``loop="scenario"``.

A step runs as::

    method.begin_step(step, scenario.step_sizes[step])
    dm.step = method.step_data(dm, scenario, step)
    for stage in method.fit_plan(step):        # step 0 of a later class order may load the shared base instead
        stage.prepare and stage.prepare(); fit(method, dm, stage)
    method.after_step(dm, scenario, step)
    row = test of method.logits on every seen class   -> scenario checkpoint (on_save_checkpoint adds the state)
    if step == 0: checkpoints/base.ckpt = method.base_state()
    stop here when method.stops_after() == step (a resumable partial run)

and after the last step ``method.after_scenario(run_dir, scenario, fit)`` adds result sections (e.g. few-shot).
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from fer_bench.data.datamodule import FERDataModule
from fer_bench.data.scenario import Scenario, StepData
from fer_bench.methods.base import FERMethod

BASE_CKPT = "base.ckpt"  # checkpoints/base.ckpt: base_state() after step 0


@dataclass(frozen=True)
class FitStage:
    """One ``Trainer.fit`` of a step: its log folder ``logs/<name>``, ``epochs`` (the trainer's max_epochs), the
    validation metric whose best epoch is restored afterwards (``monitor``; minimised when it ends in ``loss``; a new
    best must improve by more than ``min_delta``, as Keras' restore_best_weights), early stopping (``patience`` epochs
    without an improvement of ``min_delta``; 0 = off), and ``prepare``, called just before this stage's fit (e.g.
    unfreeze more layers for a second stage)."""

    name: str
    epochs: int
    monitor: str = "val/acc"
    min_delta: float = 0.0
    patience: int = 0
    prepare: Callable[[], None] | None = None


# The engine's fit of one stage, handed to hooks that train outside the step loop (run directory bound).
StageFit = Callable[["ScenarioMethod", FERDataModule, FitStage], None]


class ScenarioMethod(FERMethod, metaclass=ABCMeta):
    """A method trained as a scenario of steps by the engine's scenario loop (see the module docstring).

    It is built as ``Class(cfg, class_names, base_classes=n)``: ``class_names`` are every class of the scenario in
    its order, ``n`` the number of classes of step 0 (the head grows with ``begin_step``). The required hooks are
    abstract (a subclass without one cannot be built); the others have a default.
    """

    # building -------------------------------------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def scenario_of(cls, cfg) -> Scenario:
        """The scenario of this run (its classes in order and the classes each step adds), from ``cfg``; also the
        place to refuse a bad config before any run directory exists."""

    @classmethod
    def shares_base(cls, cfg) -> bool:
        """Whether the later seeds of a bench start from the first seed's base model (``base.ckpt``) instead of
        training step 0 again."""
        return False

    @classmethod
    def selects_base_fold(cls, cfg) -> bool:
        """Whether a bench on subject folds (``data.folds``) trains step 0 on every fold and continues, every seed, on
        the fold whose base model scores best on its held-out fold (the later seeds start from that base model)."""
        return False

    # steps ----------------------------------------------------------------------------------------------------
    @abstractmethod
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Logits over the classes seen so far (B × seen): what the test of every step scores."""

    @abstractmethod
    def begin_step(self, step: int, new_classes: int) -> None:
        """Enter ``step``, which adds ``new_classes`` classes (step 0: the base classes)."""

    @abstractmethod
    def step_data(self, dm: FERDataModule, scenario: Scenario, step: int) -> StepData:
        """The training images of ``step`` and how they are drawn (set as ``dm.step`` before fitting)."""

    @abstractmethod
    def fit_plan(self, step: int) -> list[FitStage]:
        """The fits of ``step``, in order (an empty list: nothing to train)."""

    def after_step(self, dm: FERDataModule, scenario: Scenario, step: int) -> None:
        """After the fits of ``step`` and before its test (e.g. update a replay memory)."""

    def stops_after(self) -> int | None:
        """End the run after this step, leaving a resumable partial run (``None``: run every step)."""
        return None

    # state ----------------------------------------------------------------------------------------------------
    def base_state(self) -> dict:
        """The model after step 0, saved as ``checkpoints/base.ckpt`` (tensors only: read with ``weights_only``)."""
        return {"state_dict": self.state_dict()}

    def load_base_state(self, state: dict) -> None:
        """Take over a ``base_state()`` (the bench's shared base model, or an extra protocol's start)."""
        self.load_state_dict(state["state_dict"])

    def load_scenario_checkpoint(self, checkpoint: dict) -> None:
        """Continue from the scenario checkpoint: the engine saves ``state_dict`` plus what ``on_save_checkpoint``
        adds; ``on_load_checkpoint`` must restore the shape (e.g. head size) before the weights load."""
        self.on_load_checkpoint(checkpoint)
        self.load_state_dict(checkpoint["state_dict"])

    # report ---------------------------------------------------------------------------------------------------
    def after_scenario(self, run_dir: Path, scenario: Scenario, fit: StageFit) -> dict[str, dict[str, float]]:
        """Extra protocols run after the last step (``fit`` trains a stage as the loop does): result sections by
        name, each written under its name into metrics.json and merged into the leaderboard row."""
        return {}

    def row_label(self) -> str:
        """The leaderboard's ``method`` (and default ``name``) of this run."""
        return self.cfg.method.name

    def selection_note(self) -> str:
        """The leaderboard's ``selection``: what chose each step's restored epoch."""
        return "val per step"

    def summary_facts(self) -> dict:
        """Method facts added to metrics.json (JSON values)."""
        return {}

    def wants_gradcam(self) -> bool:
        """Draw ``plots/gradcam.png`` of the final model (needs ``backbone`` with timm ``feature_info`` and
        ``head.num_classes``)."""
        return False
