"""Where configuration files live and how they are read: the project root (``experiments/``, ``data_modules/``),
data cards, experiment files (a plugin's shipped one included) and the shared profiles of
``experiments/profiles/``."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from fer_bench.config.errors import ConfigError


def project_root() -> Path:
    """Folder holding ``experiments/`` and ``data_modules/``: $FER_BENCH_HOME, the cwd, or the source tree."""
    candidates = [os.environ.get("FER_BENCH_HOME"), os.getcwd(), str(Path(__file__).resolve().parents[3])]
    for c in candidates:
        if c and (Path(c) / "experiments").is_dir() and (Path(c) / "data_modules").is_dir():
            return Path(c)
    raise ConfigError("cannot find experiments/ and data_modules/; run from the fer-bench folder or set FER_BENCH_HOME")


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


def load_yaml(path: Path, what: str, choices_dir: Path) -> DictConfig:
    """A YAML mapping of config keys; a missing file names the ones ``choices_dir`` holds."""
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


def card_path(root: Path, data_name: str) -> Path:
    return root / "data_modules" / f"{data_name}.yaml"


def experiment_path(root: Path, method: str, shipped: Path | None) -> Path:
    """``experiments/<method>.yaml``, else the file the method's spec ships (a plugin's own)."""
    path = root / "experiments" / f"{method}.yaml"
    return path if path.is_file() or shipped is None else shipped


def shared_profiles(root: Path) -> list[str]:
    """Names of the profiles in ``experiments/profiles/`` (the part every method shares)."""
    return sorted(p.stem for p in (root / "experiments" / "profiles").glob("*.yaml"))


def shared_profile(root: Path, name: str) -> tuple[DictConfig, Path] | None:
    """The shared profile ``name`` with the profile it ``extends`` underneath, and its path; ``None`` when
    ``experiments/profiles/`` has no such file."""
    folder = root / "experiments" / "profiles"
    path = folder / f"{name}.yaml"
    if not path.is_file():
        return None
    seen, layers = [name], []
    while True:
        layer = load_yaml(folder / f"{seen[-1]}.yaml", "shared profile", folder)
        base = layer.pop("extends", None)
        layers.append(layer)
        if base is None:
            break
        if base in seen:
            raise ConfigError(f"{path}: profiles extend each other in a circle: {' -> '.join([*seen, base])}")
        seen.append(base)
    return OmegaConf.merge(*reversed(layers)), path
