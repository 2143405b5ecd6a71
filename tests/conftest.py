"""Shared fixtures: every test runs offline with W&B disabled and its own cache and output folders."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import torch

os.environ.setdefault("WANDB_MODE", "disabled")
# Under pytest-xdist (make test runs one worker per core) each worker computes on one thread.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)


@pytest.fixture(autouse=True)
def _isolated_outputs(tmp_path, monkeypatch):
    """Keep caches of generated faces per test session, outputs per test."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("FER_BENCH_CACHE", str(_session_cache()))
    monkeypatch.delenv("FER_BENCH_SESSION", raising=False)


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
