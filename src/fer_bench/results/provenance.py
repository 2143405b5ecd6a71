"""Provenance of a result row: which data, which splits, which code and which recipe produced it.

- ``data_card``: the ``data_modules/<card>.yaml`` used; ``image_variant``: ``data.variant`` (e.g. aligned RAF-DB
  images) or, for the synthetic faces, a hash of the ``data.synth`` spec that rendered them.
- ``splits_hash``: hash of the train/val/test id lists the run wrote to ``<run>/splits/``, paths taken relative to
  their common folder, so the same split on another machine (another cache or data root) hashes the same.
- ``test_split_hash``: the same over the test list alone; paired comparisons (``bench.compare``) need it equal.
- ``code_version``: package version, then ``@<git commit>`` when the package runs from a git checkout, ``+dirty``
  when tracked files differ from that commit.
- ``config_hash``: hash of the resolved config without the seed, the test fold (``data.fold``), output folders,
  run label and logger settings: equal hashes = the same recipe, so rows of different seeds and folds share it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from fer_bench import __version__
from fer_bench.data.records import SPLITS
from fer_bench.data.splits import common_root

# Keys that label or place a run rather than define what it computes.
NOT_RECIPE = ("seed", "seeds", "data.fold", "run_name", "runs_dir", "results_dir", "logger", "suite",
              "trainer.progress_bar")


def _sha(text: str, n: int = 10) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:n]


def config_hash(cfg: DictConfig) -> str:
    recipe = OmegaConf.to_container(cfg, resolve=True)
    for key in NOT_RECIPE:
        *parents, leaf = key.split(".")
        node = recipe
        for p in parents:
            node = node.get(p, {})
        node.pop(leaf, None)
    return _sha(OmegaConf.to_yaml(OmegaConf.create(recipe)))


def _relative_lists(splits_dir: Path) -> dict[str, list[str]]:
    """Each split's paths relative to the folder common to all of them."""
    lists = {name: (Path(splits_dir) / f"{name}.txt").read_text().splitlines() for name in SPLITS
             if (Path(splits_dir) / f"{name}.txt").is_file()}
    paths = [p for items in lists.values() for p in items]
    if not paths:
        return {}
    root = common_root(paths)
    return {name: [os.path.relpath(p, root) for p in items] for name, items in lists.items()}


def splits_hash(splits_dir: Path) -> str:
    lists = _relative_lists(splits_dir)
    return _sha("".join(f"{name}\t{p}\n" for name, items in lists.items() for p in items)) if lists else ""


def hash_of_test_split(splits_dir: Path) -> str:
    """Hash of the test images alone (in any order): runs with equal values can be compared image by image."""
    test = _relative_lists(splits_dir).get("test", [])
    return _sha("".join(f"{p}\n" for p in sorted(test))) if test else ""


def image_variant(cfg: DictConfig) -> str:
    if cfg.data.variant:
        return str(cfg.data.variant)
    if cfg.data.reader == "synthetic":
        return f"synth-{_sha(OmegaConf.to_yaml(cfg.data.synth), 8)}"
    return "-"


@functools.cache
def code_version() -> str:
    """``<version>[@<commit>][+dirty]``; the commit part only when git and a checkout are there."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(here), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        changes = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                                 capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}@{commit}" + ("+dirty" if changes else "")


def provenance(cfg: DictConfig, run_dir: Path) -> dict[str, str]:
    """The provenance columns of a run's leaderboard rows."""
    return {"data_card": cfg.data.name, "image_variant": image_variant(cfg),
            "splits_hash": splits_hash(Path(run_dir) / "splits"),
            "test_split_hash": hash_of_test_split(Path(run_dir) / "splits"), "code_version": code_version(),
            "config_hash": config_hash(cfg)}
