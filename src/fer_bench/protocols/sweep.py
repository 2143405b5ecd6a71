"""W&B sweep files (``experiments/sweeps/<method>.yaml``): validation, expansion, W&B registration, local runs.

A sweep file is a plain W&B sweep config whose command runs the training entry with the trial's flat dotted keys::

    command: ["${env}", fer-bench, train, method=qcs, profile=cpu, "${args_no_hyphens}"]
    method: bayes                      # grid | random | bayes
    metric: {name: val/acc, goal: maximize}
    parameters:
      optim.lr: {distribution: log_uniform_values, min: 1.0e-4, max: 1.0e-2}

``${args_no_hyphens}`` renders ``key=value`` (W&B's agent: ``f"{key}={value}"``), which the command line parses, so
every DDP rank reads the same hyper-parameters from its argv. The local runner uses the ``sweeps`` package (W&B's
own grid/random/bayes search) with no server: each trial is the same ``fer-bench train`` command in a fresh
process; trials run to the end (no hyperband stopping); the metric of a trial is its last logged value, as in a
W&B run summary, and its best value is reported next to it.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from fer_bench.config import ConfigError, build_config, read_yaml_mapping

ARGS_MACRO = "${args_no_hyphens}"


def _sweeps():
    """The ``sweeps`` package (imported late: it pulls in scipy and scikit-learn)."""
    with warnings.catch_warnings():  # its pydantic-1 style config warns under pydantic 2
        warnings.simplefilter("ignore")
        import sweeps
    return sweeps


def load_sweep(path: Path) -> dict:
    """Read a sweep file and check it: W&B's sweep schema, the command form, a metric, flat parameters."""
    path = Path(path)
    spec = read_yaml_mapping(path, "sweep file")
    violations = _sweeps().schema_violations_from_proposed_config(spec)
    if violations:
        raise ConfigError(f"sweep file {path} breaks the W&B sweep schema:\n  " + "\n  ".join(violations))
    command = spec.get("command")
    if (not isinstance(command, list) or "fer-bench" not in command or ARGS_MACRO not in command
            or command[command.index("fer-bench") + 1:command.index("fer-bench") + 2] != ["train"]):
        raise ConfigError(f"sweep file {path}: 'command' must be a list [\"${{env}}\", fer-bench, train, "
                          f"key=value ..., \"{ARGS_MACRO}\"], got {command!r}")
    if not isinstance(spec.get("metric"), dict) or "name" not in spec["metric"]:
        raise ConfigError(f"sweep file {path}: 'metric' needs a name (a logged key such as val/acc) and a goal")
    nested = [k for k, v in spec["parameters"].items() if isinstance(v, dict) and "parameters" in v]
    if nested:
        raise ConfigError(f"sweep file {path}: parameters {nested} are nested; use flat dotted keys (optim.lr)")
    return spec


def fixed_args(spec: dict) -> list[str]:
    """The ``key=value`` items the command passes to every trial (between ``train`` and the trial's arguments)."""
    command = spec["command"]
    return [c for c in command[command.index("fer-bench") + 2:] if c != ARGS_MACRO]


def trial_args(run_config: dict) -> list[str]:
    """A suggestion's ``{key: {"value": v}}`` as ``key=value`` items, formatted as W&B's agent does."""
    return [f"{key}={_plain(item['value'])}" for key, item in run_config.items()]


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def _seed(seed: int) -> None:
    random.seed(seed)  # grid and random search draw from these global generators
    np.random.seed(seed)


def expand(spec: dict, n: int, seed: int = 0) -> list[list[str]]:
    """Up to ``n`` trials' arguments as the search would suggest them before any result (grid: in order)."""
    sweeps = _sweeps()
    _seed(seed)
    runs, trials = [], []
    for _ in range(n):
        with warnings.catch_warnings():  # bayes fits its Gaussian process to the placeholder results
            warnings.simplefilter("ignore")
            run = sweeps.next_run(spec, runs, validate=True)
        if run is None:
            break
        run.state = sweeps.RunState.finished
        run.summary_metrics = {spec["metric"]["name"]: 0.0}
        runs.append(run)
        trials.append(trial_args(run.config))
    return trials


def check_runnable(path: Path, n: int = 2) -> list[list[str]]:
    """Validate a sweep file and build the full config of its first ``n`` trials; returns their arguments."""
    spec = load_sweep(path)
    trials = expand(spec, n)
    for args in trials:
        try:
            build_config([*fixed_args(spec), *args])
        except ConfigError as e:
            raise ConfigError(f"sweep file {path}, trial {' '.join(args)}: {e}") from None
    return trials


def _metric_history(run_dir: Path, metric: str) -> list[float]:
    """The metric's logged values: ``logs/metrics.csv``, or the last stage's log of a staged method (continual
    steps write ``logs/step<NN>/metrics.csv``)."""
    logs = [run_dir / "logs" / "metrics.csv"] + sorted((run_dir / "logs").glob("*/metrics.csv"), reverse=True)
    log = next((p for p in logs if p.is_file()), None)
    if log is None:
        return []
    table = pd.read_csv(log)
    return table[metric].dropna().astype(float).tolist() if metric in table else []


def _run_trial(spec: dict, args: list[str], extra: list[str], log: Path) -> tuple[Path | None, int]:
    """One trial: the sweep's command in a fresh process, output to ``log``; returns (run dir, exit code)."""
    env = {k: v for k, v in os.environ.items() if k != "FER_BENCH_SESSION"}  # a new run directory per trial
    command = [sys.executable, "-m", "fer_bench.cli", "train", *fixed_args(spec), *args, *extra]
    with open(log, "w") as out:
        code = subprocess.call(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    lines = [line for line in log.read_text().splitlines() if line.startswith("run ")]
    return (Path(lines[-1][4:]) if lines else None), code


def run_local(path: Path, count: int, extra: list[str], out: Path, seed: int = 0) -> Path:
    """Run up to ``count`` trials of a sweep file without a W&B server; writes trials.csv and trials.md (ranked)."""
    sweeps = _sweeps()
    spec = load_sweep(path)
    metric, goal = spec["metric"]["name"], spec["metric"].get("goal", "minimize")
    out.mkdir(parents=True, exist_ok=True)
    _seed(seed)
    runs, rows = [], []
    for i in range(count):
        suggestion = sweeps.next_run(spec, runs, validate=True)
        if suggestion is None:  # a grid is exhausted
            break
        args = trial_args(suggestion.config)
        started = time.time()
        run_dir, code = _run_trial(spec, args, [f"run_name={Path(path).stem}-trial{i:02d}", *extra],
                                   out / f"trial{i:02d}.log")
        history = _metric_history(run_dir, metric) if run_dir and code == 0 else []
        suggestion.state = sweeps.RunState.finished if history else sweeps.RunState.failed
        suggestion.history = [{metric: v} for v in history]
        suggestion.summary_metrics = {metric: history[-1]} if history else {}
        runs.append(suggestion)
        best = (max if goal == "maximize" else min)(history) if history else math.nan
        rows.append({"trial": i, metric: history[-1] if history else math.nan, f"best {metric}": best,
                     "state": "finished" if history else f"failed (exit {code}, see trial{i:02d}.log)",
                     "minutes": round((time.time() - started) / 60, 2),
                     **{k: _plain(v["value"]) for k, v in suggestion.config.items()}, "run_dir": str(run_dir or "")})
        print(f"trial {i}: {' '.join(args)} -> {metric} {rows[-1][metric]:.4f}", flush=True)
    table = pd.DataFrame(rows).sort_values(metric, ascending=goal != "maximize", na_position="last")
    table.insert(0, "rank", range(1, len(table) + 1))
    table.to_csv(out / "trials.csv", index=False)
    header = (f"# Sweep {path} ({spec['method']}, {len(table)} trials, local)\n\n"
              f"Ranked by `{metric}` ({goal}), its last logged value as in a W&B run summary; command: "
              f"`fer-bench train {' '.join(fixed_args(spec) + extra)} <trial keys>`.\n\n")
    (out / "trials.md").write_text(header + table.to_markdown(index=False, floatfmt=".4g") + "\n")
    return out / "trials.md"


def register(path: Path, count: int | None, project: str, entity: str | None) -> int:
    """Register the sweep with W&B and run an agent here (``wandb agent``); returns the agent's exit code."""
    import wandb

    spec = load_sweep(path)
    sweep_id = wandb.sweep(sweep=spec, project=project, entity=entity)
    venv_bin = str(Path(sys.executable).parent)  # the agent execs `fer-bench` from the command through PATH
    agent = [shutil.which("wandb", path=venv_bin) or "wandb", "agent", "--project", project]
    agent += (["--entity", entity] if entity else []) + (["--count", str(count)] if count else []) + [sweep_id]
    env = {**os.environ, "PATH": venv_bin + os.pathsep + os.environ.get("PATH", "")}
    print(f"sweep {sweep_id} registered; more agents: wandb agent {' '.join(agent[2:])}", flush=True)
    return subprocess.call(agent, env=env)
