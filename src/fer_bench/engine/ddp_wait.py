"""Bounded DDP waits: the process group (set-up and every collective) times out after ``trainer.timeout_s``, and
a timeout becomes one message naming the ranks that never arrived and the likely cause.

A rank waits for the others while the process group forms and in every collective. When ``trainer.num_nodes`` or
``trainer.devices`` asks for more processes than were started (a 2-node run resumed on one machine without
``trainer.num_nodes=1``), it would wait for ranks that never come; torch's default limit is 30 minutes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from omegaconf import DictConfig

from fer_bench.config import ConfigError

# Lightning's registered DDP strategy names and their process start methods.
START_METHODS = {"ddp": "popen", "ddp_spawn": "spawn", "ddp_fork": "fork", "ddp_notebook": "fork"}
FIND_UNUSED = "_find_unused_parameters_true"
TIMEOUT_TEXT = re.compile(r"timed out|timeout", re.IGNORECASE)
DISTRIBUTED_TEXT = re.compile(r"clients joined|gloo|nccl|store|collective|process group|watchdog", re.IGNORECASE)


class DDPTimeoutError(ConfigError):
    """A rank gave up waiting for the others."""


def strategy_for(trainer_cfg: DictConfig, name: str):
    """The Lightning strategy of ``name``: a DDP strategy with ``timeout=trainer.timeout_s``; other names as
    given (``auto`` with one device needs no process group)."""
    base = name.removesuffix(FIND_UNUSED)
    if base not in START_METHODS:
        return name
    from lightning.pytorch.strategies import DDPStrategy

    return DDPStrategy(start_method=START_METHODS[base], find_unused_parameters=name.endswith(FIND_UNUSED),
                       timeout=timedelta(seconds=trainer_cfg.timeout_s))


def _rank_layout(trainer_cfg: DictConfig) -> tuple[int | None, int, range | None]:
    """(expected world size, this process's rank, the ranks this machine started) as far as knowable: torchrun
    sets WORLD_SIZE/RANK/GROUP_RANK/LOCAL_WORLD_SIZE; Lightning's own launcher NODE_RANK/LOCAL_RANK."""
    devices = trainer_cfg.devices if isinstance(trainer_cfg.devices, int) and trainer_cfg.devices > 0 else None
    if trainer_cfg.devices == -1 and trainer_cfg.accelerator in ("gpu", "cuda"):  # all visible GPUs
        import torch

        devices = torch.cuda.device_count() or None
    world = devices * trainer_cfg.num_nodes if devices else None
    env = os.environ
    node = int(env.get("GROUP_RANK", env.get("NODE_RANK", 0)))
    local = int(env.get("LOCAL_WORLD_SIZE", devices or 0)) or None
    rank = int(env.get("RANK", node * (local or 0) + int(env.get("LOCAL_RANK", 0))))
    return world, rank, range(node * local, (node + 1) * local) if local else None


def _ranks(ranks: list[int] | range) -> str:
    ranks = list(ranks)
    return f"rank {ranks[0]}" if len(ranks) == 1 else f"ranks {ranks[0]}-{ranks[-1]}"


def explain(error: BaseException, trainer_cfg: DictConfig) -> str:
    """The message for a DDP wait that timed out."""
    t = trainer_cfg
    world, rank, here = _rank_layout(t)
    lines = [f"DDP: rank {rank} waited trainer.timeout_s={t.timeout_s} s for the other processes and gave up "
             f"({str(error).strip().splitlines()[0][:300]})"]
    if world is not None and here is not None:
        missing = [r for r in range(world) if r not in here]
        joined = re.search(r"(\d+)/(\d+) clients joined", str(error))
        arrived = f"; {joined.group(1)} of {joined.group(2)} joined" if joined else ""
        lines.append(f"the run expects {world} processes (trainer.devices={t.devices} x trainer.num_nodes="
                     f"{t.num_nodes}); this machine started {_ranks(here)}"
                     + (f"; {_ranks(missing)} never arrived{arrived}" if missing else arrived))
    lines.append("likely cause: trainer.num_nodes / trainer.devices do not match the processes started. On one "
                 "machine give trainer.num_nodes=1 and trainer.devices=<its GPUs> (with resume=<run dir> too); on "
                 "several, start the same command on every node (NODE_RANK, MASTER_ADDR, one FER_BENCH_SESSION). "
                 "If a rank is merely slow, raise trainer.timeout_s.")
    return "\n  ".join(lines)


def is_timeout(error: BaseException) -> bool:
    """A distributed wait that ran out of time: torch's DistError, or an error a rank re-raised (``ddp_spawn``)
    whose text names a timeout of the store, gloo, NCCL or a collective."""
    import torch.distributed as dist

    text = str(error)
    distributed = isinstance(error, dist.DistError) or bool(DISTRIBUTED_TEXT.search(text))
    return distributed and bool(TIMEOUT_TEXT.search(text))


@contextmanager
def explained_timeouts(cfg: DictConfig) -> Iterator[None]:
    """Turn a DDP timeout raised inside the block into ``DDPTimeoutError`` with ``explain``'s message."""
    try:
        yield
    except Exception as e:
        if is_timeout(e):
            raise DDPTimeoutError(explain(e, cfg.trainer)) from e
        raise
