"""Building a run's config. Merge order, later wins: package defaults (:mod:`fer_bench.config.schema`) ←
``data_modules/<data>.yaml`` ← ``experiments/<method>.yaml`` ← its faithful block (``method.protocol=faithful``) ←
the profile (``experiments/profiles/<profile>.yaml``, then the experiment's ``profiles.<profile>`` block) ←
``trainer.preset`` ← command-line ``key=value`` overrides. Unknown keys, wrong types and values outside a key's
choices stop here, before any run directory exists; nothing here imports torch, OpenCV or pandas."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from fer_bench.config import faithful
from fer_bench.config.errors import ConfigError
from fer_bench.config.files import card_path, experiment_path, load_yaml, project_root, shared_profile, shared_profiles
from fer_bench.config.merge import merge, parse_overrides, split_selectors, strict_schema
from fer_bench.config.presets import apply_preset
from fer_bench.config.schema import DataConfig
from fer_bench.config.validate import FOLD_READERS, check_values, run_schema
from fer_bench.methods import UnknownMethod, spec_of


def _method_spec(name, source: str = "method"):
    """The registered method ``name``; unknown: a ConfigError naming the close keys."""
    try:
        return spec_of(name)
    except UnknownMethod as e:
        raise ConfigError(f"{source}: {e}") from None


def build_config(overrides: list[str] | None = None) -> DictConfig:
    """Merge defaults ← data card ← experiment (+ faithful block, profile) ← preset ← overrides, validated."""
    selectors, values = split_selectors(list(overrides or []))
    method = selectors.get("method", "baseline")
    spec = _method_spec(method)
    data_name = selectors.get("data", "synthetic")
    root = project_root()

    path = card_path(root, data_name)
    cfg = merge(strict_schema(run_schema(method)), {"data": load_yaml(path, "data card", path.parent)}, str(path))
    cfg.data.name = data_name

    exp_path = experiment_path(root, method, spec.experiment_file())
    experiment = load_yaml(exp_path, "experiment", root / "experiments")
    profiles = experiment.pop("profiles", None) or {}
    faithful_block = experiment.pop("faithful", None)
    cfg = merge(cfg, experiment, str(exp_path))
    command_line = parse_overrides(values)
    profile = _profile_layers(root, exp_path, profiles, selectors.get("profile"))
    if _protocol(command_line, profile, cfg) == "faithful":
        # the authors' recipe (experiments/<method>.yaml `faithful:`, docs/faithful.md) below profile and command line
        try:
            block = faithful.check_block(faithful_block or {}, str(exp_path))
        except faithful.FaithfulError as e:
            raise ConfigError(str(e)) from None
        cfg = merge(cfg, faithful.overrides(block, data_name), f"{exp_path} (faithful)")
    for layer, source in profile:
        cfg = merge(cfg, layer, source)
    if profile:
        cfg.profile = selectors["profile"]

    preset = OmegaConf.select(command_line, "trainer.preset", default=None) or cfg.trainer.preset
    cfg = merge(apply_preset(cfg, preset), command_line, "command line")
    cfg.method.name = method
    check_values(cfg)
    return cfg


def _profile_layers(root: Path, exp_path: Path, blocks: DictConfig | dict, name: str | None) -> list[tuple]:
    """``[(layer, source)]`` of profile ``name``: the shared file, then the experiment's own block."""
    if not name:
        return []
    shared = shared_profile(root, name)
    if shared is None and name not in blocks:
        known = sorted({*blocks, *shared_profiles(root)})
        raise ConfigError(f"experiment {exp_path} has no profile '{name}'; profiles: {', '.join(known)}")
    layers = [(shared[0], str(shared[1]))] if shared else []
    if name in blocks:
        layers.append((blocks[name], f"{exp_path} (profile {name})"))
    return layers


def _protocol(command_line: DictConfig, profile: list[tuple], cfg: DictConfig) -> str:
    """``method.protocol`` as the finished config will have it (the command line's, the profile's or the
    experiment's), known before the faithful block is merged below them."""
    for layer in (command_line, *(layer for layer, _ in reversed(profile)), cfg):
        value = OmegaConf.select(OmegaConf.create(layer), "method.protocol", default=None)
        if value:
            return value
    return cfg.method.protocol


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
    cfg = merge(cfg, parse_overrides(values), "command line")
    cfg.seeds = [cfg.seed]
    check_values(cfg)
    return cfg


def data_card(name: str) -> DictConfig:
    """The data config of ``data_modules/<name>.yaml`` merged onto the defaults, validated."""
    path = card_path(project_root(), name)
    cfg = merge(strict_schema(DataConfig), load_yaml(path, "data card", path.parent), str(path))
    cfg.name = name
    return cfg


def load_run_config(run_dir: Path) -> DictConfig:
    """Reload the resolved config a run saved, validated against the current schema."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{path} not found: is '{run_dir}' a fer-bench run directory?")
    saved = OmegaConf.load(path)
    method = saved.get("method", {}).get("name")
    _method_spec(method, str(path))
    cfg = merge(strict_schema(run_schema(method)), saved, str(path))
    if cfg.data.reader not in FOLD_READERS:  # saved before folds were opt-in: every data set had folds 10, fold 0
        cfg.data.folds = cfg.data.fold = None
    return cfg


def to_yaml(cfg: DictConfig | ListConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)
