"""Benchmark suites: ``experiments/suites/<name>.yaml`` → every method on the same data, splits and seeds.

A suite file::

    description: one line
    methods: [baseline, qcs]            # method keys, or the string all (= every registered method)
    data: synthetic                     # a data card (default synthetic)
    seeds: [0, 1, 2]                    # default [0]
    overrides: ["data.synth.difficulty=hard"]   # applied to every run (optional)
    method_overrides: {qcs: ["optim.lr=1e-3"]}  # per method key (optional)
    runs: [{name: clip_probe, method: clip_gfer, overrides: ["method.variant=linear_probe"]}]  # extra named runs

Each run merges, later wins: the method's experiment (and the command line's ``profile=``) ← ``overrides`` ←
``method_overrides[method]`` ← the run's own ``overrides`` ← the command line. Every config is built and validated
before the first run trains. Rows carry the suite's name in the leaderboard's ``suite`` column.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from fer_bench.config import ConfigError, build_config, project_root, read_yaml_mapping

KEYS = ("description", "methods", "data", "seeds", "overrides", "method_overrides", "runs")
RUN_KEYS = ("name", "method", "overrides")


@dataclass
class SuiteRun:
    """One entry of a suite: a label, a method key and its overrides (before the command line's)."""

    name: str
    method: str
    overrides: list[str]


def suite_path(name: str) -> Path:
    """``experiments/suites/<name>.yaml``, or ``name`` itself when it is a YAML file."""
    if name.endswith((".yaml", ".yml")):
        return Path(name)
    return project_root() / "experiments" / "suites" / f"{name}.yaml"


def _fail(path: Path, key: str, problem: str) -> ConfigError:
    return ConfigError(f"suite {path}: '{key}' {problem}")


def _str_list(value, path: Path, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(path, key, f"must be a list of strings, got {value!r}")
    bad = [v for v in value if "=" not in v]
    if bad:
        raise _fail(path, key, f"holds {bad}: each item must be a key=value override")
    return value


def _method_key(value, path: Path, key: str, known: list[str]) -> str:
    if value not in known:
        raise _fail(path, key, f"names unknown method {value!r}; methods: {', '.join(known)}")
    return value


def load_suite(path: Path, known: list[str]) -> tuple[dict, list[SuiteRun]]:
    """Validate a suite file against the format above; returns its mapping and its runs (before the command line)."""
    if not path.is_file():
        choices = sorted(p.stem for p in path.parent.glob("*.yaml")) if path.parent.is_dir() else []
        raise ConfigError(f"no suite {path.stem!r} ({path} does not exist); suites: {', '.join(choices) or 'none'}")
    spec = read_yaml_mapping(path, "suite")
    unknown = sorted(set(spec) - set(KEYS))
    if unknown:
        raise _fail(path, unknown[0], f"is not a suite key; keys: {', '.join(KEYS)}")
    if not isinstance(spec.get("description"), str):
        raise _fail(path, "description", "is required: one line saying what the suite compares")
    methods = spec.get("methods", [])
    methods = list(known) if methods == "all" else methods
    if not isinstance(methods, list):
        raise _fail(path, "methods", f"must be a list of method keys or the string all, got {methods!r}")
    methods = [_method_key(m, path, "methods", known) for m in methods]
    if len(set(methods)) < len(methods):
        raise _fail(path, "methods", f"lists a method twice: {methods}")
    data = spec.get("data", "synthetic")
    if not isinstance(data, str):
        raise _fail(path, "data", f"must be a data card name, got {data!r}")
    seeds = spec.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool)
                                                          for s in seeds):
        raise _fail(path, "seeds", f"must be a non-empty list of integers, got {seeds!r}")
    common = _str_list(spec.get("overrides", []), path, "overrides")
    per_method = spec.get("method_overrides", {}) or {}
    if not isinstance(per_method, dict):
        raise _fail(path, "method_overrides", f"must map method keys to override lists, got {per_method!r}")
    per_method = {_method_key(m, path, "method_overrides", known): _str_list(v, path, f"method_overrides.{m}")
                  for m, v in per_method.items()}
    runs = [SuiteRun(m, m, [*common, *per_method.get(m, [])]) for m in methods]
    extra = spec.get("runs", []) or []
    if not isinstance(extra, list):
        raise _fail(path, "runs", f"must be a list of {{name, method, overrides}} mappings, got {extra!r}")
    for i, run in enumerate(extra):
        where = f"runs[{i}]"
        if not isinstance(run, dict) or set(run) - set(RUN_KEYS) or not {"name", "method"} <= set(run):
            raise _fail(path, where, f"must be a mapping with name, method and optional overrides, got {run!r}")
        if not isinstance(run["name"], str) or not run["name"].replace("_", "").replace("-", "").isalnum():
            raise _fail(path, f"{where}.name", f"must be a word (letters, digits, - and _), got {run['name']!r}")
        method = _method_key(run["method"], path, f"{where}.method", known)
        own = _str_list(run.get("overrides", []), path, f"{where}.overrides")
        runs.append(SuiteRun(run["name"], method, [*common, *per_method.get(method, []), *own]))
    names = [r.name for r in runs]
    if len(set(names)) < len(names):
        raise _fail(path, "runs", f"run names must be unique (method keys count as names): {names}")
    if not runs:
        raise _fail(path, "methods", "and 'runs' are both empty: the suite has nothing to run")
    return {"data": data, "seeds": seeds}, runs


def suite_configs(name: str, args: list[str]) -> list[DictConfig]:
    """Every run's config of suite ``name`` with the command-line ``args`` on top, all validated up front."""
    from fer_bench.methods import method_keys

    path = suite_path(name)
    if any(a.startswith("method=") for a in args):
        raise ConfigError(f"suite {path} picks the methods; drop method= from the command line")
    spec, runs = load_suite(path, method_keys())
    configs = []
    for run in runs:
        named = [f"run_name={run.name}"] if run.name != run.method else []
        overrides = [f"method={run.method}", f"data={spec['data']}", f"seeds={spec['seeds']}", *run.overrides,
                     *named, f"suite={path.stem}", *args]
        try:
            configs.append(build_config(overrides))
        except ConfigError as e:
            raise ConfigError(f"suite {path}, run '{run.name}': {e}") from None
    return configs
