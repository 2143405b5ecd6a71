"""The ``method.*`` keys of continual basic → compound learning (Maiden & Nakisa 2023; official code:
github.com/AngusMaiden/complex-FER)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from fer_bench.config.choices import choice
from fer_bench.config.faithful import PROTOCOLS
from fer_bench.config.init_sources import BACKBONE_INIT, InitSource


@dataclass
class KDConfig:
    """Distillation from the frozen base model: γ_i = gamma0·exp(−i / (1 + e)), soft-target CE at temperature T."""

    T: float = 3.0
    gamma0: float = 0.1


@dataclass
class PSMRConfig:
    """Exemplar ranking: ``logit`` (the raw class logit, as the official code) or ``prob`` (softmax); ``rerank``
    re-scores every stored class over all its training images at every step (the official code never does)."""

    score: str = choice("logit", "prob")
    rerank: bool = False


@dataclass
class FewShotConfig:
    """Few-shot phase from the base model (AngusMaiden/complex-FER): per compound class (the first ``classes`` of the
    order; 0 = all), ``shots`` images repeated ``repeats`` times per epoch. Scored two ways: ``fewshot_paper``
    (the new class's test images only) and ``fewshot_nway`` (all base classes plus the new one)."""

    enabled: bool = False
    shots: list[int] = field(default_factory=lambda: [5, 3, 1])
    classes: int = 0
    repeats: int = 32
    batch_size: int = 32
    epochs: int = 1000


@dataclass
class ContinualConfig:
    """Class-incremental basic → compound learning (Maiden & Nakisa, arXiv 2308.06197).

    ``strategy``: psmr_kd (the method) or a baseline variant: finetune, random_replay, kd_only, joint. Step 0 trains
    at ``optim.lr`` for ``trainer.max_epochs`` with ``data.batch_size``; compound steps at ``step_lr`` for
    ``step_epochs`` with ``step_batch_size``. A bench seed is the class-order index (< ``n_orders``).
    ``*_trainable``: backbone parameter-name prefixes that train (null = all); ``freeze_bn`` keeps BatchNorm in
    eval mode and frozen in compound steps. ``patience``: early stopping per step (0 = off). ``max_steps``: cut the
    scenario (null = every compound). ``stop_after``: end the run after that step (a resumable partial run).
    """

    paper_init: ClassVar[str] = "ResNet-50 (V2) pre-trained on ImageNet"
    init_sources: ClassVar[tuple[InitSource, ...]] = (BACKBONE_INIT,)

    name: str = "continual"
    protocol: str = choice(*PROTOCOLS)
    strategy: str = choice("psmr_kd", "finetune", "random_replay", "kd_only", "joint")  # module.STRATEGIES
    n_orders: int = 10
    order_seed: int = 42
    increment: int = 1
    base_space: str = "basic6"
    max_steps: int | None = None
    head_hidden: list[int] = field(default_factory=lambda: [512, 32])
    head_dropout: float = 0.2
    head_activation: str = choice("sigmoid", "relu")
    global_pool: str = choice("max", "avg")
    normalize: bool = False
    l2: float = 1.0e-5
    base_trainable: list[str] | None = None
    # complex-FER's two-stage base training: stage A trains base_trainable (the head alone with []), stage B
    # base_finetune_trainable (null: no stage B) at base_finetune_lr; base_freeze_bn holds the backbone's
    # BatchNorm in inference mode in both (Keras layers with trainable=False); base_min_delta: early stopping's.
    base_finetune_trainable: list[str] | None = None
    base_finetune_lr: float = 1.0e-6
    base_freeze_bn: bool = False
    base_min_delta: float = 0.0
    share_base: bool = False  # one base model for every class order of a bench (the first order's), as complex-FER
    # with data.folds: `best` trains the base on every subject fold and continues (every class order) on the fold whose
    # base scores best on its held-out fold, as complex-FER's `--phase all`; `given`: the fold of data.fold
    base_fold: str = choice("given", "best")
    step_trainable: list[str] | None = None
    freeze_bn: bool = True
    step_lr: float = 1.0e-5
    step_epochs: int = 1000
    step_batch_size: int = 16
    patience: int = 100
    mem_mode: str = choice("grow", "limit")
    mem_fraction: float = 0.3
    new_class_subset: str | None = choice(None, "redraw", "fixed")  # null: redraw (faithful), fixed (corrected)
    kd: KDConfig = field(default_factory=KDConfig)
    psmr: PSMRConfig = field(default_factory=PSMRConfig)
    fewshot: FewShotConfig = field(default_factory=FewShotConfig)
    gradcam: bool = True
    stop_after: int | None = None

