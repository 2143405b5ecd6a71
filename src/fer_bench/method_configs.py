"""Per-method config schemas (``method.*`` keys), kept free of heavy imports so configs validate instantly.

Each method file in ``methods/`` reads its block from ``cfg.method``; the registry below maps the method key to
its schema. ``protocol``: ``corrected`` selects checkpoints on a validation split carved from train;
``faithful`` reproduces the paper's protocol (e.g. per-epoch test accuracy), flagged in the leaderboard.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from fer_bench.init_sources import InitSource
from fer_bench.labels import ABAW12_AUS

BACKBONE_INIT = InitSource("backbone", "backbone.weights", hub="backbone.pretrained", hub_model="backbone.name")


@dataclass
class BaselineConfig:
    paper_init: ClassVar[str] = ""
    init_sources: ClassVar[tuple[InitSource, ...]] = (BACKBONE_INIT,)

    name: str = "baseline"
    protocol: str = "corrected"
    label_smoothing: float = 0.0


@dataclass
class CSAConfig:
    variant: str = "sd"
    scope: str = "batch"


@dataclass
class QCSConfig:
    """``trunk_weights``: IR-50 (or timm trunk) weights, e.g. ``ir50.pth``; ``weights``: a whole-network state_dict,
    e.g. a released QCS checkpoint converted with ``fer-bench convert format=qcs``."""

    paper_init: ClassVar[str] = "IR-50 trunk pre-trained on MS-Celeb-1M (ir50.pth)"
    init_sources: ClassVar[tuple[InitSource, ...]] = (InitSource("trunk", "method.trunk_weights"),
                                                      InitSource("net", "method.weights"))

    name: str = "qcs"
    protocol: str = "corrected"
    trunk: str = "ir50"
    trunk_weights: str | None = None
    weights: str | None = None
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
    """A downstream head on frozen features with Keras semantics (HSEmotion's ABAW-6 notebooks).

    ``None`` takes the task's value from HSEmotion (``fer_bench.downstream.tasks.TASK_DEFAULTS``). ``frames``: rows
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

    paper_init: ClassVar[str] = "backbone pre-trained for face identification on VGGFace2 (from ImageNet)"
    init_sources: ClassVar[tuple[InitSource, ...]] = (BACKBONE_INIT, InitSource("net", "method.weights"))

    name: str = "multitask"
    protocol: str = "corrected"
    weights: str | None = None
    head_epochs: int = 3
    head_lr: float = 1e-3
    # phase A: the frozen backbone's BatchNorm in train mode (statistics keep updating, as HSEmotion's training
    # script: requires_grad False under model.train()) or eval mode (statistics fixed)
    head_phase_bn: str = "train"
    restore_head_best: bool = True  # phase B starts from the phase-A epoch of best selection accuracy
    label_smoothing: float = 0.0
    class_weights: bool = True
    au_head: HeadConfig = field(default_factory=lambda: HeadConfig(task="au"))


@dataclass
class KDConfig:
    """Distillation from the frozen base model: γ_i = gamma0·exp(−i / (1 + e)), soft-target CE at temperature T."""

    T: float = 3.0
    gamma0: float = 0.1


@dataclass
class PSMRConfig:
    """Exemplar ranking: ``logit`` (the raw class logit, as the official code) or ``prob`` (softmax); ``rerank``
    re-scores every stored class over all its training images at every step (the official code never does)."""

    score: str = "logit"
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
    protocol: str = "corrected"
    strategy: str = "psmr_kd"
    n_orders: int = 10
    order_seed: int = 42
    increment: int = 1
    base_space: str = "basic6"
    max_steps: int | None = None
    head_hidden: list[int] = field(default_factory=lambda: [512, 32])
    head_dropout: float = 0.2
    head_activation: str = "sigmoid"
    global_pool: str = "max"
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
    step_trainable: list[str] | None = None
    freeze_bn: bool = True
    step_lr: float = 1.0e-5
    step_epochs: int = 1000
    step_batch_size: int = 16
    patience: int = 100
    mem_mode: str = "grow"
    mem_fraction: float = 0.3
    new_class_subset: str | None = None  # redraw | fixed; null: redraw (faithful) or fixed (corrected)
    kd: KDConfig = field(default_factory=KDConfig)
    psmr: PSMRConfig = field(default_factory=PSMRConfig)
    fewshot: FewShotConfig = field(default_factory=FewShotConfig)
    gradcam: bool = True
    stop_after: int | None = None


@dataclass
class ClipTowerConfig:
    """The CLIP image tower (timm). ``weights``: a local OpenAI (TorchScript or state_dict), open_clip or timm
    checkpoint; ``hub``: timm's ``<model>.openai`` weights from the hub (needs network). Size fields left ``None``
    keep the model's own (``out_dim`` 512); the CPU profile sets them for a tiny random tower."""

    model: str = "vit_base_patch32_clip_quickgelu_224"
    weights: str | None = None
    hub: bool = False
    half_on_gpu: bool = True
    out_dim: int | None = None
    embed_dim: int | None = None
    depth: int | None = None
    heads: int | None = None
    patch_size: int | None = None


@dataclass
class ClipGferConfig:
    """CAFE (Zhang et al., ECCV 2024). ``variant``: ``cafe`` (mask + channel losses), ``linear_probe`` (frozen tower +
    linear head) or ``finetune`` (tower trained at ``finetune_lr`` + linear head). ``mask_trunk``/``mask_weights``:
    the mask CNN and its face-recognition weights; ``lam``/``beta``: weights of l_sep/l_div; ``drop``: channels
    zeroed per group; ``groups``/``div``: ``code`` (official) or ``paper`` forms; ``preprocess``: ``imagenet``
    (official) or ``clip`` mean/std."""

    paper_init: ClassVar[str] = "CLIP ViT-B/32 image tower (OpenAI weights)"
    init_sources: ClassVar[tuple[InitSource, ...]] = (
        InitSource("clip", "method.clip.weights", hub="method.clip.hub", hub_model="method.clip.model",
                   hub_tag=".openai"),
        InitSource("mask", "method.mask_weights", paper=False))

    name: str = "clip_gfer"
    protocol: str = "corrected"
    variant: str = "cafe"
    clip: ClipTowerConfig = field(default_factory=ClipTowerConfig)
    mask_trunk: str = "resnet18"
    mask_weights: str | None = None
    lam: float = 1.5
    beta: float = 5.0
    drop: int = 10
    groups: str = "code"
    div: str = "code"
    preprocess: str = "imagenet"
    finetune_lr: float = 1.0e-5


METHOD_CONFIGS: dict[str, type] = {
    "baseline": BaselineConfig,
    "qcs": QCSConfig,
    "multitask": MultitaskConfig,
    "clip_gfer": ClipGferConfig,
    "continual": ContinualConfig,
}
