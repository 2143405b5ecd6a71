"""The run schema: one dataclass per config block, package defaults included. Choice-valued keys carry their
choices as field metadata (:func:`fer_bench.config.choices.choice`); ``method`` is the selected method's own
dataclass (its ``MethodSpec.config``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fer_bench.config.choices import choice
from fer_bench.config.synth_spec import SynthSpec


@dataclass
class AugmentConfig:
    """Training augmentation (albumentations); evaluation only resizes and normalises."""

    hflip: float = 0.5
    scale: list[float] = field(default_factory=lambda: [0.85, 1.0])
    rotate: float = 10.0
    color_jitter: float = 0.2
    erasing: float = 0.0
    # torchvision recipes of official scripts (data/transforms.py): null hue = color_jitter / 4
    hue: float | None = None
    jitter_p: float = 0.8
    rotate_p: float = 0.5
    rotate_border: str = choice("reflect", "constant")  # constant: fill 0 (torchvision RandomRotation)
    # pil_bilinear: torchvision Resize on PIL images
    interpolation: str = choice("area", "bilinear", "nearest", "pil_bilinear")
    crop_from: int | None = None  # Resize(crop_from) then RandomCrop (train) / CenterCrop (eval) to the input size
    erasing_scale: list[float] = field(default_factory=lambda: [0.02, 0.1])
    noise_var: float = 0.0  # additive Gaussian noise on uint8 pixels (variance), before resizing
    noise_p: float = 0.5
    zoom: float = 0.0  # Keras RandomZoom(z, z): independent height/width scale in [1 - z, 1 + z]
    translate: float = 0.0  # Keras RandomTranslation(t, t): independent shifts up to t of the height/width


@dataclass
class CsvOptions:
    """Columns of the generic ``csv`` reader; paths in the file are relative to ``data.root``."""

    file: str = "labels.csv"
    path_column: str = "path"
    label_column: str = "expression"


@dataclass
class FerplusOptions:
    """FERPlus vote handling (microsoft/FERPlus src/ferplus.py): ``majority`` or ``probability``."""

    label_mode: str = choice("majority", "probability")


@dataclass
class CkplusOptions:
    """CK+ protocol: the last ``last_frames`` frames up to the peak carry the sequence's emotion; with
    ``first_neutral`` the first frame is added as neutral."""

    last_frames: int = 3
    first_neutral: bool = True


@dataclass
class CfeeOptions:
    """CFEE: the class table (``id,name``, the exported summary sheet), relative to ``data.root`` or absolute."""

    classes: str = "classes.csv"


@dataclass
class AbawOptions:
    """Aff-Wild2 / ABAW: tasks to read (EXPR, VA, AU; or MTL alone, the multi-task challenge's single CSV per set)
    and the annotation folder names of the challenge edition."""

    tasks: list[str] = field(default_factory=lambda: ["EXPR"])
    annotations: str = "annotations"
    expr: str = "EXPR_Classification_Challenge"
    va: str = "VA_Estimation_Challenge"
    au: str = "AU_Detection_Challenge"
    mtl: str = "MTL_Challenge"


@dataclass
class DataConfig:
    name: str = "synthetic"
    reader: str = "synthetic"
    root: str | None = None
    variant: str = ""
    space: str = "basic7"
    target: str = choice("expression", "compound")
    image_size: int | None = None
    batch_size: int = 64
    eval_batch_size: int | None = None
    num_workers: int = 2
    pin_memory: bool = False
    persistent_workers: bool = True
    sampler: str = choice("random", "balanced")
    val_fraction: float = 0.15
    test_fraction: float = 0.2
    split_seed: int = 0
    on_error: str = choice("raise", "skip")
    check: str = choice("full", "stat", "off")  # full: image headers checked once per file version, then cached
    drop_outside_space: bool = False  # true: labels outside `space` are dropped and counted (AffectNet-7)
    # Subject-independent folds (CK+, CFEE, class folders with subject_regex): fold f = test subjects, val carved
    # from the others. fold unset: `bench` runs every fold (mean ± std over folds), `train` fold 0.
    folds: int | None = None
    fold: int | None = None
    subject_regex: str | None = None  # folder reader: group 1, searched in each file name, is the subject id
    cluster_by: str = choice("image", "subject", "video")  # bootstrap unit of test intervals (video: `subject`)
    cache_dir: str = "${oc.env:FER_BENCH_CACHE,'~/.cache/fer-bench'}"
    request: str = ""
    group_columns: list[str] = field(default_factory=list)  # extra record columns kept for group_by (csv reader)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    csv: CsvOptions = field(default_factory=CsvOptions)
    ferplus: FerplusOptions = field(default_factory=FerplusOptions)
    ckplus: CkplusOptions = field(default_factory=CkplusOptions)
    abaw: AbawOptions = field(default_factory=AbawOptions)
    cfee: CfeeOptions = field(default_factory=CfeeOptions)
    synth: SynthSpec = field(default_factory=SynthSpec)


@dataclass
class BackboneConfig:
    """A timm model name; ``weights`` is a local state_dict file loaded after construction. ``input_size``,
    ``mean``, ``std``: the input recipe; null = from converted weights' metadata, else the backbone's own config
    (models/preprocessing.py); a run's config.yaml holds the resolved values."""

    name: str = "resnet18"
    pretrained: bool = False
    weights: str | None = None
    drop_rate: float = 0.0
    input_size: int | None = None
    mean: list[float] | None = None
    std: list[float] | None = None


@dataclass
class SamConfig:
    enabled: bool = False
    rho: float = 0.05
    adaptive: bool = False


@dataclass
class OptimConfig:
    name: str = choice("adam", "adamw", "sgd", default="adamw")
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    sam: SamConfig = field(default_factory=SamConfig)


@dataclass
class SchedConfig:
    name: str = choice("none", "cosine", "exponential", default="cosine")
    gamma: float = 0.98
    warmup_epochs: int = 0
    min_lr_ratio: float = 0.01


@dataclass
class TrainerConfig:
    preset: str | None = None  # a trainer_presets.yaml entry (config/presets.py), applied under the command line
    max_epochs: int = 10
    accelerator: str = "auto"
    devices: Any = 1
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "32-true"
    deterministic: bool = False
    log_every_n_steps: int = 10
    limit_train_batches: float = 1.0
    limit_val_batches: float = 1.0
    limit_test_batches: float = 1.0
    gradient_clip_val: float | None = None
    channels_last: bool = True
    compile: bool = False  # torch.compile every network of the method (in place: checkpoints keep their keys)
    progress_bar: bool = True
    timeout_s: int = 1800  # DDP set-up and collectives give up after this long (bench/ddp_wait.py)


@dataclass
class LoggerConfig:
    wandb: bool = True
    project: str = "fer-bench"
    entity: str | None = None
    tags: list[str] = field(default_factory=list)


@dataclass
class EvalConfig:
    """Test-time evaluation. Confidence intervals of test metrics: a seeded bootstrap over test images (or
    ``data.cluster_by`` units). Cross-domain scoring (bench/cross_domain.py): ``target_color=bgr`` feeds the
    ``color_targets`` (empty: every eval_on target) with channels reversed, as Generalizable-FER's notebooks did for
    some published columns."""

    bootstrap: int = 2000  # resamples; 0 turns intervals off
    bootstrap_seed: int = 0
    ci_level: float = 0.95
    ci_method: str = choice("bca", "percentile")  # BCa falls back to percentile above 10,000 units
    target_color: str = choice("rgb", "bgr")
    color_targets: list[str] = field(default_factory=list)


@dataclass
class RunConfig:
    """Top-level schema; ``method`` is replaced by the selected method's own dataclass."""

    method: Any = None
    data: DataConfig = field(default_factory=DataConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sched: SchedConfig = field(default_factory=SchedConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0
    seeds: list[int] = field(default_factory=lambda: [0])
    runs_dir: str = "runs"
    results_dir: str = "results"
    run_name: str | None = None
    profile: str | None = None
    eval_on: list[str] = field(default_factory=list)  # cross-domain targets (bench/cross_domain.py)
    suite: str | None = None  # set by `fer-bench bench suite=<name>`: the suite a run belongs to
