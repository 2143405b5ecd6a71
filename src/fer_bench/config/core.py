"""Load, merge and validate run configurations.

Merge order, later wins: package defaults (the dataclasses below) ← ``data_modules/<data>.yaml`` ←
``experiments/<method>.yaml`` (and its ``profiles.<profile>`` block) ← ``trainer.preset`` ← command-line
``key=value`` overrides.
Unknown keys and wrong types stop before any work, naming the key, its source and the closest valid keys.
This module imports no deep-learning library so that a bad command line fails in well under a second.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from fer_bench.config import faithful
from fer_bench.data.synthetic import SynthSpec
from fer_bench.methods import UnknownMethod, registry, spec_of


class ConfigError(ValueError):
    """A configuration problem the user can fix; the message says what and where."""


def read_yaml_mapping(path: Path, kind: str) -> dict:
    """A YAML file that must hold a mapping (a suite, a sweep): clear errors for a missing, unparsable or
    non-mapping file, naming ``kind`` and the path."""
    import yaml

    if not path.is_file():
        raise ConfigError(f"{kind} {path} does not exist")
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"cannot parse {kind} {path}: {e}") from None
    if not isinstance(spec, dict):
        raise ConfigError(f"{kind} {path} must be a mapping")
    return spec


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
    rotate_border: str = "reflect"  # reflect | constant (fill 0, torchvision RandomRotation)
    interpolation: str = "area"  # area | bilinear | nearest | pil_bilinear (torchvision Resize on PIL images)
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

    label_mode: str = "majority"


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
    target: str = "expression"
    image_size: int | None = None
    batch_size: int = 64
    eval_batch_size: int | None = None
    num_workers: int = 2
    pin_memory: bool = False
    persistent_workers: bool = True
    sampler: str = "random"
    val_fraction: float = 0.15
    test_fraction: float = 0.2
    split_seed: int = 0
    on_error: str = "raise"
    check: str = "full"  # full: image headers checked once per file version, then cached | stat | off
    drop_outside_space: bool = False  # true: labels outside `space` are dropped and counted (AffectNet-7)
    # Subject-independent folds (CK+, CFEE, class folders with subject_regex): fold f = test subjects, val carved
    # from the others. fold unset: `bench` runs every fold (mean ± std over folds), `train` fold 0.
    folds: int | None = None
    fold: int | None = None
    subject_regex: str | None = None  # folder reader: group 1, searched in each file name, is the subject id
    cluster_by: str = "image"  # bootstrap unit of test intervals: image | subject | video (the `subject` column)
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
    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    sam: SamConfig = field(default_factory=SamConfig)


@dataclass
class SchedConfig:
    name: str = "cosine"
    gamma: float = 0.98
    warmup_epochs: int = 0
    min_lr_ratio: float = 0.01


@dataclass
class TrainerConfig:
    preset: str | None = None  # cpu | gpu | ddp | ddp_sim (TRAINER_PRESETS), applied under command-line values
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
    ci_method: str = "bca"  # bca | percentile (BCa falls back to percentile above 10,000 units)
    target_color: str = "rgb"
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
    eval: EvalConfig = field(default_factory=EvalConfig)
    suite: str | None = None  # set by `fer-bench bench suite=<name>`: the suite a run belongs to


# Trainer presets (`trainer.preset=NAME`): merged after the experiment and its profile, before the other
# command-line values, so `trainer.preset=ddp trainer.devices=4` works. ddp_sim = DDP on 2 CPU processes (gloo).
TRAINER_PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {"accelerator": "cpu", "devices": 1, "strategy": "auto", "precision": "32-true", "timeout_s": 120},
    "gpu": {"accelerator": "gpu", "devices": 1, "strategy": "auto", "precision": "bf16-mixed", "timeout_s": 1800},
    "ddp": {"accelerator": "gpu", "devices": -1, "strategy": "ddp", "precision": "bf16-mixed", "timeout_s": 1800},
    "ddp_sim": {"accelerator": "cpu", "devices": 2, "strategy": "ddp_spawn", "precision": "32-true",
                "timeout_s": 120},
}


# Methods whose input size and normalisation come from backbone.input_size/mean/std (models/preprocessing.py).

# Readers that split by subject folds (data.folds, data.fold).
FOLD_READERS = ("ckplus", "cfee", "folder")

# Keys that pick files rather than set values; they are pulled from the command line before merging.
SELECTOR_KEYS = ("method", "data", "profile")


def project_root() -> Path:
    """Folder holding ``experiments/`` and ``data_modules/``: $FER_BENCH_HOME, the cwd, or the source tree."""
    candidates = [os.environ.get("FER_BENCH_HOME"), os.getcwd(), str(Path(__file__).resolve().parents[3])]
    for c in candidates:
        if c and (Path(c) / "experiments").is_dir() and (Path(c) / "data_modules").is_dir():
            return Path(c)
    raise ConfigError("cannot find experiments/ and data_modules/; run from the fer-bench folder or set FER_BENCH_HOME")


def _flat_keys(node: Any, prefix: str = "") -> list[str]:
    if not isinstance(node, DictConfig):
        return [prefix] if prefix else []
    keys = []
    for k in node.keys():
        path = f"{prefix}.{k}" if prefix else str(k)
        child = node._get_node(k)
        keys.append(path)
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            keys.extend(_flat_keys(child, path))
    return keys


def _unknown_key_message(key: str, source: str, schema: DictConfig) -> str:
    valid = _flat_keys(schema)
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
    parent = key.rsplit(".", 1)[0] if "." in key else ""
    siblings = [k for k in valid if k.rsplit(".", 1)[0] == parent and k.count(".") == key.count(".")]
    msg = f"unknown config key '{key}' (from {source})"
    if close:
        msg += f"; did you mean {' or '.join(repr(c) for c in close)}?"
    if siblings:
        msg += f"\n  valid keys{' under ' + parent if parent else ''}: {', '.join(sorted(siblings))}"
    return msg


def _check_keys(cfg: DictConfig, schema: DictConfig, source: str, prefix: str = "") -> None:
    for k in cfg.keys():
        path = f"{prefix}.{k}" if prefix else str(k)
        if k not in schema:
            raise ConfigError(_unknown_key_message(path, source, schema_root(schema)))
        child, sub = cfg._get_node(k), schema._get_node(k)
        open_node = isinstance(sub, DictConfig) and sub._is_none()
        if isinstance(child, DictConfig) and isinstance(sub, DictConfig) and not open_node:
            _check_keys(child, sub, source, path)


def schema_root(node: DictConfig) -> DictConfig:
    while node._get_parent() is not None:
        node = node._get_parent()
    return node


def _merge(base: DictConfig, extra: DictConfig, source: str) -> DictConfig:
    _check_keys(extra, base, source)
    try:
        return OmegaConf.merge(base, extra)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", "") or "?"
        reason = e.msg if hasattr(e, "msg") else e
        raise ConfigError(f"bad value for config key '{key}' (from {source}): {reason}") from None


def _load_yaml(path: Path, what: str, choices_dir: Path) -> DictConfig:
    if not path.is_file():
        choices = sorted(p.stem for p in choices_dir.glob("*.yaml"))
        raise ConfigError(f"no {what} '{path.stem}' ({path} does not exist); available: {', '.join(choices)}")
    try:
        loaded = OmegaConf.load(path)
    except Exception as e:  # yaml syntax errors name the line
        raise ConfigError(f"cannot parse {path}: {e}") from None
    if not isinstance(loaded, DictConfig):
        raise ConfigError(f"{path} must hold a mapping of config keys")
    return loaded


def split_selectors(overrides: list[str]) -> tuple[dict[str, str], list[str]]:
    """Separate ``method=``, ``data=`` and ``profile=`` (file selectors) from value overrides."""
    selectors, rest = {}, []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"command-line argument '{item}' is not of the form key=value")
        key, value = item.split("=", 1)
        if key in SELECTOR_KEYS:
            selectors[key] = value
        else:
            rest.append(item)
    return selectors, rest


def _parse_overrides(overrides: list[str]) -> DictConfig:
    try:
        return OmegaConf.from_dotlist(overrides)
    except Exception as e:
        raise ConfigError(f"cannot parse command-line overrides {overrides}: {e}") from None


def dataclass_overrides(cls: type, overrides: list[str], source: str) -> dict:
    """Validate ``key=value`` overrides against a dataclass; returns its merged fields as a plain dict."""
    schema = OmegaConf.structured(cls)
    OmegaConf.set_struct(schema, True)
    return OmegaConf.to_container(_merge(schema, _parse_overrides(overrides), source), resolve=True)


def method_name_of(selectors: dict[str, str]) -> str:
    name = selectors.get("method", "baseline")
    _method_spec(name)
    return name


def _method_spec(name, source: str = "method"):
    """The registered method ``name``; unknown: a ConfigError naming the close keys."""
    try:
        return spec_of(name)
    except UnknownMethod as e:
        raise ConfigError(f"{source}: {e}") from None


def build_config(overrides: list[str] | None = None) -> DictConfig:
    """Merge defaults ← data card ← experiment (+ profile) ← overrides into one validated config."""
    selectors, values = split_selectors(list(overrides or []))
    method = method_name_of(selectors)
    data_name = selectors.get("data", "synthetic")
    root = project_root()
    schema = OmegaConf.structured(RunConfig(method=_method_spec(method).config()))
    OmegaConf.set_struct(schema, True)

    card_path = root / "data_modules" / f"{data_name}.yaml"
    card = _load_yaml(card_path, "data card", root / "data_modules")
    cfg = _merge(schema, OmegaConf.create({"data": card}), str(card_path))
    cfg.data.name = data_name

    exp_path = root / "experiments" / f"{method}.yaml"
    if not exp_path.is_file():  # a plugin method ships its own experiment file
        exp_path = _method_spec(method).experiment_file() or exp_path
    experiment = _load_yaml(exp_path, "experiment", root / "experiments")
    profiles = experiment.pop("profiles", None) or {}
    faithful_block = experiment.pop("faithful", None)
    cfg = _merge(cfg, experiment, str(exp_path))
    profile = selectors.get("profile")
    if profile and profile not in profiles:
        raise ConfigError(f"experiment {exp_path} has no profile '{profile}'; profiles: {', '.join(profiles)}")
    layers = [_parse_overrides(values), profiles[profile] if profile else {}, cfg]
    if next(p for p in (OmegaConf.select(OmegaConf.create(x), "method.protocol") for x in layers) if p) == "faithful":
        # the authors' recipe (experiments/<method>.yaml `faithful:`, docs/faithful.md) below profile and command line
        try:
            block = faithful.check_block(faithful_block or {}, str(exp_path))
        except faithful.FaithfulError as e:
            raise ConfigError(str(e)) from None
        cfg = _merge(cfg, faithful.overrides(block, data_name), f"{exp_path} (faithful)")
    if profile:
        cfg = _merge(cfg, profiles[profile], f"{exp_path} (profile {profile})")
        cfg.profile = profile

    cfg = _apply_command_line(cfg, values)
    cfg.method.name = method
    _check_values(cfg)
    return cfg


def _apply_command_line(cfg: DictConfig, values: list[str]) -> DictConfig:
    """Merge the trainer preset (the command line's, else the config's), then the command-line values."""
    command_line = _parse_overrides(values)
    preset = OmegaConf.select(command_line, "trainer.preset", default=None) or cfg.trainer.preset
    if preset is not None:
        if preset not in TRAINER_PRESETS:
            raise ConfigError(f"trainer.preset={preset}: unknown preset; presets: {', '.join(TRAINER_PRESETS)}")
        cfg = _merge(cfg, OmegaConf.create({"trainer": TRAINER_PRESETS[preset]}), f"trainer.preset={preset}")
    return _merge(cfg, command_line, "command line")


def resume_config(run_dir: Path, overrides: list[str]) -> DictConfig:
    """The saved, resolved config of the run to resume with the command-line values on top (e.g.
    ``trainer.devices=4``); presets are not applied again (fer_bench.engine.resume checks what changed).
    ``method=``, ``data=`` and ``profile=`` given again must match the run; the run keeps its seed."""
    cfg = load_run_config(run_dir)
    selectors, values = split_selectors(overrides)
    saved = {"method": cfg.method.name, "data": cfg.data.name, "profile": cfg.profile}
    for key, value in selectors.items():
        if value != saved[key]:
            raise ConfigError(f"{key}={value} does not match the run being resumed: {run_dir}/config.yaml has "
                              f"{key}={saved[key]}")
    seeded = [v for v in values if v.split("=", 1)[0] in ("seed", "seeds")]
    if seeded:
        raise ConfigError(f"{' '.join(seeded)}: a resumed run keeps its seed ({cfg.seed}); leave seeds out")
    cfg = _merge(cfg, _parse_overrides(values), "command line")
    cfg.seeds = [cfg.seed]
    _check_values(cfg)
    return cfg


def data_card(name: str) -> DictConfig:
    """The data config of ``data_modules/<name>.yaml`` merged onto the defaults, validated."""
    schema = OmegaConf.structured(DataConfig)
    OmegaConf.set_struct(schema, True)
    path = project_root() / "data_modules" / f"{name}.yaml"
    cfg = _merge(schema, _load_yaml(path, "data card", path.parent), str(path))
    cfg.name = name
    return cfg


def _check_values(cfg: DictConfig) -> None:
    if cfg.data.check == "False":  # YAML reads `off` as a boolean
        cfg.data.check = "off"
    choices = {
        "data.on_error": ("raise", "skip"),
        "data.check": ("full", "stat", "off"),
        "data.ferplus.label_mode": ("majority", "probability"),
        "data.sampler": ("random", "balanced"),
        "data.target": ("expression", "compound"),
        "data.cluster_by": ("image", "subject", "video"),
        "eval.ci_method": ("bca", "percentile"),
        "optim.name": ("adam", "adamw", "sgd"),
        "sched.name": ("none", "cosine", "exponential"),
        "method.protocol": ("corrected", "faithful"),
        "data.augment.interpolation": ("area", "bilinear", "nearest", "pil_bilinear"),
        "data.augment.rotate_border": ("reflect", "constant"),
        "eval.target_color": ("rgb", "bgr"),
        "trainer.preset": (None, *TRAINER_PRESETS),
    }
    for key, allowed in choices.items():
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            raise ConfigError(f"config key '{key}' = {value!r}; allowed: {', '.join(allowed)}")
    if cfg.trainer.timeout_s <= 0:
        raise ConfigError(f"config key 'trainer.timeout_s' = {cfg.trainer.timeout_s}: give seconds > 0")
    _check_backbone_input(cfg)
    if cfg.eval.bootstrap < 0 or not 0 < cfg.eval.ci_level < 1:
        raise ConfigError(f"eval.bootstrap={cfg.eval.bootstrap}, eval.ci_level={cfg.eval.ci_level}: resamples must "
                          "be >= 0 (0: no intervals) and the level within (0, 1)")
    _check_folds(cfg.data)
    if cfg.method.protocol == "corrected" and cfg.data.val_fraction <= 0:
        raise ConfigError("data.val_fraction must be > 0 under method.protocol=corrected (it selects on a validation "
                          "split carved from train); no validation split is the faithful protocol's")
    spec = spec_of(cfg.method.name)
    if cfg.eval_on and not spec.can("cross_domain"):
        raise ConfigError(f"eval_on={list(cfg.eval_on)}: cross-domain tests are not supported for method={spec.key}")
    try:
        spec.check_config(cfg)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as e:
        raise ConfigError(f"cannot resolve config: {e}") from None


def _check_backbone_input(cfg: DictConfig) -> None:
    b = cfg.backbone
    given = [k for k in ("input_size", "mean", "std") if b[k] is not None]
    if given and not spec_of(cfg.method.name).can("backbone_input"):
        readers = [key for key, spec in registry().items() if spec.can("backbone_input")]
        raise ConfigError(f"backbone.{given[0]}: method={cfg.method.name} has its own input recipe and does not read "
                          f"backbone.input_size/mean/std (methods that do: {', '.join(readers)})")
    if b.input_size is not None and b.input_size < 1:
        raise ConfigError(f"config key 'backbone.input_size' = {b.input_size}; must be a positive number of pixels")
    for key in ("mean", "std"):
        value = b[key]
        if value is not None and (len(value) != 3 or (key == "std" and min(value) <= 0)):
            raise ConfigError(f"config key 'backbone.{key}' = {list(value)}; give 3 RGB values"
                              + (", all > 0" if key == "std" else ""))


def _check_folds(data: DictConfig) -> None:
    if data.folds is None:
        if data.fold is not None:
            raise ConfigError(f"data.fold={data.fold} needs data.folds (the number of subject folds)")
        return
    if data.reader not in FOLD_READERS:
        raise ConfigError(f"data.folds={data.folds}: reader '{data.reader}' of data set '{data.name}' keeps its own "
                          f"splits; subject folds apply to the readers {', '.join(FOLD_READERS)}")
    if data.folds < 2 or (data.fold is not None and not 0 <= data.fold < data.folds):
        raise ConfigError(f"data.fold={data.fold} data.folds={data.folds}: need data.folds >= 2 and data.fold in "
                          f"0..{data.folds - 1} (or unset: every fold in bench)")


def load_run_config(run_dir: Path) -> DictConfig:
    """Reload the resolved config a run saved, validated against the current schema."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{path} not found: is '{run_dir}' a fer-bench run directory?")
    saved = OmegaConf.load(path)
    method = saved.get("method", {}).get("name")
    schema = OmegaConf.structured(RunConfig(method=_method_spec(method, str(path)).config()))
    OmegaConf.set_struct(schema, True)
    cfg = _merge(schema, saved, str(path))
    if cfg.data.reader not in FOLD_READERS:  # saved before folds were opt-in: every data set had folds 10, fold 0
        cfg.data.folds = cfg.data.fold = None
    return cfg


def to_yaml(cfg: DictConfig | ListConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)
