"""The ``method.*`` keys of the HSEmotion multitask method (Savchenko 2024; official code:
github.com/av-savchenko/face-emotion-recognition) and of its downstream heads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from fer_bench.config.choices import choice
from fer_bench.config.faithful import PROTOCOLS
from fer_bench.config.init_sources import BACKBONE_INIT, InitSource
from fer_bench.labels import ABAW12_AUS


@dataclass
class HeadConfig:
    """A downstream head on frozen features with Keras semantics (HSEmotion's ABAW-6 notebooks).

    ``None`` takes the task's value from HSEmotion (``downstream.tasks.TASK_DEFAULTS``). ``frames``: rows are video
    frames (``<video>/<frame number>*.jpg``), enabling temporal smoothing (``delta``) and, for ``ce``,
    the max over the faces of a frame. AU labels count as present when ``>= au_presence``.
    """

    task: str = choice("expr", "va", "au", "intensity", "ce")  # downstream.tasks.TASK_DEFAULTS
    inputs: str | None = choice(None, "embedding", "scores")
    hidden: int | None = None  # units of the one hidden ReLU layer; 0 = linear (logistic regression)
    epochs: int | None = None
    batch_size: int | None = None
    lr: float = 1e-3
    l2: float | None = None
    frames: bool = False
    delta: int | None = None
    aus: list[int] = field(default_factory=lambda: list(ABAW12_AUS))
    au_presence: float = 0.5
    compounds: str = "cexprdb"
    seed: int = 0


@dataclass
class MultitaskConfig:
    """Stage 2 of HSEmotion: phase A trains the head alone (``head_epochs`` at ``head_lr``), phase B all layers
    at ``optim.lr`` until ``trainer.max_epochs``. ``weights``: a whole-network state_dict (e.g. a converted
    HSEmotion model). ``label_smoothing``: 0 = ``CrossEntropyLoss(weight=w)`` (the MTL recipe); ε > 0 = the FER-only
    recipe's weighted soft targets. ``au_head``: the AU head fitted on frozen train features at test time when the
    data has AU labels.
    """

    paper_init: ClassVar[str] = "backbone pre-trained for face identification on VGGFace2 (from ImageNet)"
    init_sources: ClassVar[tuple[InitSource, ...]] = (BACKBONE_INIT, InitSource("net", "method.weights"))

    name: str = "multitask"
    protocol: str = choice(*PROTOCOLS)
    weights: str | None = None
    head_epochs: int = 3
    head_lr: float = 1e-3
    # phase A: the frozen backbone's BatchNorm in train mode (statistics keep updating, as HSEmotion's training
    # script: requires_grad False under model.train()) or eval mode (statistics fixed)
    head_phase_bn: str = choice("train", "eval")
    restore_head_best: bool = True  # phase B starts from the phase-A epoch of best selection accuracy
    label_smoothing: float = 0.0
    class_weights: bool = True
    au_head: HeadConfig = field(default_factory=lambda: HeadConfig(task="au"))
