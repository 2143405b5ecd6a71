"""Checks of a merged config before any work: every choice-valued key (generic, from the schema's field metadata),
then the cross-key rules (folds, backbone input recipe, validation split, cross-domain) and the method's own
``check``."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from fer_bench.config.choices import check_choices, refusal
from fer_bench.config.errors import ConfigError
from fer_bench.config.faithful import PROTOCOLS
from fer_bench.config.presets import TRAINER_PRESETS
from fer_bench.config.schema import RunConfig
from fer_bench.methods import registry, spec_of

# Readers that split by subject folds (data.folds, data.fold).
FOLD_READERS = ("ckplus", "cfee", "folder")


def run_schema(method: str) -> RunConfig:
    """The schema instance of a run of ``method``: the package defaults with the method's own dataclass."""
    return RunConfig(method=spec_of(method).config())


def check_values(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for the first value the run would refuse; resolves interpolations in place."""
    if cfg.data.check == "False":  # YAML reads `off` as a boolean
        cfg.data.check = "off"
    check_choices(cfg, run_schema(cfg.method.name))
    for key, allowed in {"method.protocol": PROTOCOLS, "trainer.preset": (None, *TRAINER_PRESETS)}.items():
        if OmegaConf.select(cfg, key) not in allowed:  # framework keys, whatever a plugin's schema declares
            raise ConfigError(refusal(key, OmegaConf.select(cfg, key), allowed))
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
