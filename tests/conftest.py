"""Shared fixtures: every test runs offline with W&B disabled and its own cache and output folders."""

from __future__ import annotations

import itertools
import os
import socket
import sys
import types

import cv2
import numpy as np
import pytest
import torch
from torch import nn

os.environ.setdefault("WANDB_MODE", "disabled")
# Under pytest-xdist (make test runs one worker per core) each worker computes on one thread.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)


@pytest.fixture(autouse=True)
def _isolated_outputs(tmp_path, monkeypatch):
    """Keep caches of generated faces per test session, outputs per test."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("FER_BENCH_CACHE", str(_session_cache()))
    monkeypatch.delenv("FER_BENCH_SESSION", raising=False)
    monkeypatch.setenv("MASTER_PORT", str(free_port()))


_PORT_OFFSETS = itertools.count()


def free_port() -> int:
    """A free TCP port for one DDP rendezvous, below the kernel's ephemeral range and in a block of its own per xdist
    worker, so that concurrent tests never draw the same port (binding port 0 can hand two workers one port)."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    base = 20000 + 500 * (worker % 24)
    for _ in range(500):
        port = base + next(_PORT_OFFSETS) % 500
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in {base}..{base + 499}")


_CACHE: list = []


def _session_cache():
    """One cache per test session, shared by the xdist workers of that session (cache builds are atomic)."""
    if not _CACHE:
        import tempfile

        run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
        if run:
            shared = os.path.join(tempfile.gettempdir(), f"fer-bench-cache-{run}")
            os.makedirs(shared, exist_ok=True)
            _CACHE.append(shared)
        else:
            _CACHE.append(tempfile.mkdtemp(prefix="fer-bench-cache-"))
    return _CACHE[0]


def write_png(path, rgb: np.ndarray) -> None:
    """Write an RGB array as PNG (cv2 wants BGR)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def pickle_with_vanished_classes(model: nn.Module, path, module_name: str) -> None:
    """Save ``model`` whole with its classes renamed into a throwaway module, which is then removed."""
    fake = types.ModuleType(module_name)
    sys.modules[module_name] = fake
    try:
        for m in model.modules():
            cls = type(m)
            if not cls.__module__.startswith("torch"):
                if not hasattr(fake, cls.__name__):
                    setattr(fake, cls.__name__, type(cls.__name__, (cls,), {"__module__": module_name}))
                m.__class__ = getattr(fake, cls.__name__)
        torch.save(model, path)
    finally:
        del sys.modules[module_name]


def pytest_collection_modifyitems(items):
    """The slow tier first, so that the xdist workers start the long tests at once and finish together."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


# The synthetic task the learning tests of the fit loop train on: 30 subjects (6 test subjects x 7 classes x 3).
LEARN_DATA = ["profile=cpu", "data.synth.subjects=30", "data.synth.per_subject=3", "data.synth.difficulty=easy",
              "data.num_workers=0", "data.batch_size=16", "trainer.progress_bar=false", "logger.wandb=false"]
BASELINE_SIZE = 48  # 8 epochs: test accuracy 0.865 (chance 1/7; the tests ask for more than 1/7 + 0.4)
BASELINE_LEARNS = [*LEARN_DATA, f"data.synth.size={BASELINE_SIZE}", f"data.image_size={BASELINE_SIZE}",
                   "trainer.max_epochs=8"]


@pytest.fixture(scope="session")
def learned_baseline(tmp_path_factory):
    """(run directory, results folder) of one baseline run that learned the synthetic task, shared by the learning,
    re-test, predict and export tests (tests/test_baseline.py, tests/test_predict_export.py): one training for all."""
    from fer_bench.config import build_config
    from fer_bench.engine import runner

    out = tmp_path_factory.mktemp("learned-baseline")
    cfg = build_config([*BASELINE_LEARNS, f"runs_dir={out / 'runs'}", f"results_dir={out / 'results'}"])
    return runner.train_one(cfg), out / "results"
