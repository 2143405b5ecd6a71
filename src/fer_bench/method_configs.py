"""Per-method config schemas (``method.*`` keys), kept free of heavy imports so configs validate instantly.

Each method file in ``methods/`` reads its block from ``cfg.method``; the registry below maps the method key to
its schema. ``protocol``: ``corrected`` selects checkpoints on a validation split carved from train;
``faithful`` reproduces the paper's protocol (e.g. per-epoch test accuracy), flagged in the leaderboard.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fer_bench.labels import ABAW12_AUS


@dataclass
class BaselineConfig:
    name: str = "baseline"
    protocol: str = "corrected"
    label_smoothing: float = 0.0


@dataclass
class CSAConfig:
    variant: str = "sd"
    scope: str = "batch"


@dataclass
class QCSConfig:
    name: str = "qcs"
    protocol: str = "corrected"
    trunk: str = "ir50"
    trunk_weights: str | None = None
    trunk_out_indices: list[int] = field(default_factory=lambda: [1, 2, 3])
    image_size: int = 224
    dim: int = 768
    heads: int = 8
    base_depth: int = 2
    cross_depth: int = 1
    cross_dropout: float = 0.0
    branches: int = 4
    anchors: str = "shuffle"
    negatives: str = "frequency"
    epoch_fraction: float = 1.0
    csa: CSAConfig = field(default_factory=CSAConfig)


@dataclass
class HeadConfig:
    """A downstream head on frozen features with Keras semantics (specs/multitask.md §4, §7).

    ``None`` takes the task's value from the spec (``fer_bench.downstream.tasks.TASK_DEFAULTS``). ``frames``: rows
    are video frames (``<video>/<frame number>*.jpg``), enabling temporal smoothing (``delta``) and, for ``ce``,
    the max over the faces of a frame. AU labels count as present when ``>= au_presence``.
    """

    task: str = "expr"  # expr | va | au | intensity | ce
    inputs: str | None = None  # embedding | scores
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

    name: str = "multitask"
    protocol: str = "corrected"
    weights: str | None = None
    head_epochs: int = 3
    head_lr: float = 1e-3
    label_smoothing: float = 0.0
    class_weights: bool = True
    au_head: HeadConfig = field(default_factory=lambda: HeadConfig(task="au"))


METHOD_CONFIGS: dict[str, type] = {
    "baseline": BaselineConfig,
    "qcs": QCSConfig,
    "multitask": MultitaskConfig,
}
