"""``fer-bench bench resume=<run dir>``: check everything, then record the resume, then continue.

A resume continues the run's saved, resolved ``config.yaml`` exactly: presets are not applied again. The values
given on the command line are the only changes. Values that say where and how the run executes
(``TOPOLOGY_KEYS``) may change; any other value changes the recipe and is refused unless
``resume.allow_recipe_change=true``. ``trainer.max_epochs`` counts as recipe: the learning-rate schedule is laid
out over it (cosine, warm-up), so a longer run is not the run that was started.

Nothing in the run directory is written until the config is checked and the checkpoint has been read and fitted
to the run's model; a refused or failed resume leaves every file as it was. Then (rank 0 only) changed values
go into ``config.yaml``, the resume into ``resumes.yaml`` (when, which checkpoint, which values changed from what
to what), and temporary files of killed checkpoint writes are removed.

Resume options (not config keys): ``resume.ckpt=best|last|<file>`` picks the checkpoint (default ``last.ckpt``,
else ``best.ckpt``, else the run starts again from its first epoch); ``resume.allow_recipe_change=true``.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from fer_bench.atomic import atomic_write_text, stale_temporaries
from fer_bench.config import ConfigError, load_run_config, resume_config, to_yaml
from fer_bench.labels import class_names
from fer_bench.methods import spec_of

# Keys (or key prefixes) that say where and how a run executes, not what it computes. data.batch_size is the
# global batch (split over the ranks), so a different number of devices keeps it; data.root may move with the
# machine (the saved splits must all be found under it); method.stop_after only ends a run early.
TOPOLOGY_KEYS = (
    "trainer.devices", "trainer.num_nodes", "trainer.strategy", "trainer.accelerator", "trainer.timeout_s",
    "trainer.progress_bar", "trainer.log_every_n_steps",
    "data.num_workers", "data.pin_memory", "data.persistent_workers", "data.eval_batch_size", "data.root",
    "data.cache_dir", "logger", "runs_dir", "results_dir", "method.stop_after",
)
# Recorded and compared, but set by the resume itself: a resumed run is its one seed.
SET_BY_RESUME = ("seeds",)
OPTIONS = {"resume.ckpt": "", "resume.allow_recipe_change": "false"}
RECORD = "resumes.yaml"
SCENARIO_CKPT = "scenario.ckpt"


class ResumeError(ConfigError):
    """A resume that cannot go ahead; the message says why and what to do instead."""


@dataclass
class ResumePlan:
    run_dir: Path
    cfg: DictConfig
    ckpt: Path | None  # None: no checkpoint yet, the run starts again from its first epoch
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    epoch: int | None = None


def is_topology(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in TOPOLOGY_KEYS)


def split_options(args: list[str]) -> tuple[dict[str, str], list[str]]:
    """``resume.*`` options apart from the config values."""
    options, rest = dict(OPTIONS), []
    for a in args:
        key, sep, value = a.partition("=")
        if key.startswith("resume."):
            if key not in OPTIONS or not sep:
                raise ResumeError(f"unknown resume option '{a}'; options: {', '.join(k + '=' for k in OPTIONS)}")
            options[key] = value
        else:
            rest.append(a)
    if options["resume.allow_recipe_change"] not in ("true", "false"):
        raise ResumeError(f"resume.allow_recipe_change={options['resume.allow_recipe_change']}: true or false")
    return options, rest


def _flat(cfg: DictConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        else:
            out[prefix] = node

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return out


def config_changes(saved: DictConfig, cfg: DictConfig) -> dict[str, tuple[Any, Any]]:
    """Every flat key whose value differs: ``{key: (saved, new)}``."""
    before, after = _flat(saved), _flat(cfg)
    return {k: (before.get(k), after.get(k)) for k in sorted(before.keys() | after.keys())
            if k not in SET_BY_RESUME and before.get(k) != after.get(k)}


def check_changes(changes: dict[str, tuple[Any, Any]], allow_recipe_change: bool, run_dir: Path) -> None:
    """Refuse a preset (presets apply when a run is created) and, unless allowed, recipe changes."""
    if "trainer.preset" in changes:
        old, new = changes["trainer.preset"]
        raise ResumeError(f"trainer.preset={new}: presets apply only when a run is created ({run_dir} was made "
                          f"with trainer.preset={old}); to run on other hardware give the values themselves, "
                          "e.g. trainer.devices=4 trainer.num_nodes=2")
    recipe = {k: v for k, v in changes.items() if not is_topology(k)}
    if recipe and not allow_recipe_change:
        listed = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in recipe.items())
        raise ResumeError(f"resume={run_dir} refuses to change the recipe ({listed}): the run's checkpoints were "
                          "made with the saved values. Add resume.allow_recipe_change=true to change it anyway "
                          "(recorded in resumes.yaml), or start a new run. Values a resume may change: "
                          f"{', '.join(TOPOLOGY_KEYS)}")


def _checkpoint_names(run_dir: Path) -> str:
    names = sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt"))
    return ", ".join(names) if names else "none"


def _is_scenario(cfg: DictConfig) -> bool:
    return spec_of(cfg.method.name).loop == "scenario"


def choose_checkpoint(run_dir: Path, cfg: DictConfig, requested: str) -> Path | None:
    """The checkpoint to continue from: ``resume.ckpt`` (``best``, ``last``, a file name under checkpoints/ or a
    path), else last.ckpt, else best.ckpt; None when the run has none yet."""
    folder = run_dir / "checkpoints"
    if _is_scenario(cfg):
        if requested and Path(requested).name not in (SCENARIO_CKPT, Path(SCENARIO_CKPT).stem):
            raise ResumeError(f"resume.ckpt={requested}: a {cfg.method.name} run (a scenario of steps) resumes from "
                              f"checkpoints/{SCENARIO_CKPT} (after its last finished step)")
        return folder / SCENARIO_CKPT if (folder / SCENARIO_CKPT).is_file() else None
    if requested:
        candidates = [Path(requested), folder / requested, folder / f"{requested}.ckpt"]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise ResumeError(f"resume.ckpt={requested}: no such checkpoint; {folder} holds: "
                              f"{_checkpoint_names(run_dir)}")
        return found
    return next((folder / f"{k}.ckpt" for k in ("last", "best") if (folder / f"{k}.ckpt").is_file()), None)


def read_checkpoint(path: Path, run_dir: Path | None = None) -> dict:
    """A checkpoint's content (``weights_only``); a damaged or unreadable file gives one error naming it and the
    ways on."""
    import torch

    try:
        return torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception as e:  # truncated zip, bad pickle, permissions, a file that is not a checkpoint
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        others = f" (checkpoints here: {_checkpoint_names(run_dir)})" if run_dir else ""
        raise ResumeError(f"cannot read checkpoint {path}: it is damaged or not a checkpoint ({reason}). Resume "
                          f"from another saved checkpoint with resume.ckpt=best or resume.ckpt=<file>{others}, "
                          "or start the run anew without resume=.") from None


def check_checkpoint(plan: ResumePlan) -> None:
    """Read the checkpoint and fit its weights to the model the run's config builds."""
    state = read_checkpoint(plan.ckpt, plan.run_dir)
    if "state_dict" not in state:
        raise ResumeError(f"{plan.ckpt} holds no model weights (state_dict): not a fer-bench checkpoint. Resume "
                          "with resume.ckpt=<another file> or start the run anew.")
    if _is_scenario(plan.cfg):  # the model grows step by step: the scenario loop fits it
        plan.epoch = int(state.get("step", -1))
        return
    try:
        spec_of(plan.cfg.method.name).build(plan.cfg, class_names(plan.cfg.data.space)).load_state_dict(
            state["state_dict"])
    except RuntimeError as e:
        raise ResumeError(f"{plan.ckpt} does not fit the model of {plan.run_dir}/config.yaml with the values given: "
                          f"{str(e).splitlines()[0]}") from None
    plan.epoch = int(state["epoch"])


def prepare(run_dir: Path, args: list[str]) -> ResumePlan:
    """Check the resume of ``run_dir`` with the command-line ``args``; raises ``ResumeError`` before writing."""
    run_dir = Path(run_dir)
    options, values = split_options(args)
    saved = load_run_config(run_dir)
    cfg = resume_config(run_dir, values)
    changes = config_changes(saved, cfg)
    check_changes(changes, options["resume.allow_recipe_change"] == "true", run_dir)
    plan = ResumePlan(run_dir, cfg, choose_checkpoint(run_dir, cfg, options["resume.ckpt"]), changes)
    if plan.ckpt is not None:
        check_checkpoint(plan)
    return plan


def _is_rank_zero() -> bool:
    """Global rank 0 of a launch (torchrun sets RANK; Lightning's launcher NODE_RANK and LOCAL_RANK)."""
    env = os.environ
    return int(env.get("RANK", 0)) == 0 and int(env.get("NODE_RANK", 0)) == 0 and int(env.get("LOCAL_RANK", 0)) == 0


def record(plan: ResumePlan) -> None:
    """Print the resume, write changed values into config.yaml and append it to resumes.yaml (rank 0)."""
    if not _is_rank_zero():
        return
    unit = "step" if _is_scenario(plan.cfg) else "epoch"
    where = f"{plan.ckpt} ({unit} {plan.epoch})" if plan.ckpt else f"the first {unit} (no checkpoint yet)"
    print(f"resuming {plan.run_dir} from {where}")
    for key, (old, new) in plan.changes.items():
        print(f"  {key}: {old!r} -> {new!r}" + ("" if is_topology(key) else "  (recipe change, allowed)"))
    if plan.changes:
        written = plan.cfg.copy()
        written.seeds = load_run_config(plan.run_dir).seeds
        atomic_write_text(plan.run_dir / "config.yaml", to_yaml(written))
    path = plan.run_dir / RECORD
    history = yaml.safe_load(path.read_text()) if path.is_file() else []
    history.append({
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "checkpoint": str(plan.ckpt) if plan.ckpt else None,
        unit: plan.epoch,
        "changes": {k: {"from": old, "to": new} for k, (old, new) in plan.changes.items()},
        "command": " ".join(sys.argv[1:]),
    })
    atomic_write_text(path, yaml.safe_dump(history, sort_keys=False))
    for tmp in stale_temporaries(plan.run_dir / "checkpoints"):
        tmp.unlink()


def default_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint a resume continues from when ``resume.ckpt`` is not given."""
    return choose_checkpoint(run_dir, load_run_config(run_dir), "")
