"""fer-bench weight files: a plain state_dict, optionally wrapped with metadata.

``fer-bench convert`` writes ``{"state_dict": {...}, "fer_bench": {...}}``: the tensors plus what the network needs
to be rebuilt and fed (backbone, classes, valence/arousal outputs, input size, mean, std, source file). Both forms load
with ``torch.load(weights_only=True)``: the metadata holds only strings, numbers, booleans and lists.
"""

from __future__ import annotations

from pathlib import Path

import torch

from fer_bench.atomic import atomic_save

META_KEY = "fer_bench"


def save(state: dict[str, torch.Tensor], meta: dict, path: str | Path) -> Path:
    """Write ``state`` with ``meta`` to ``path`` atomically (parent folders created)."""
    path = Path(path)
    atomic_save({"state_dict": state, META_KEY: meta}, path)
    return path


def load(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(state_dict, metadata) of a weight file; metadata is empty for a plain state_dict."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} not found")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(obj, dict):
        raise ValueError(f"weights file {path} holds a {type(obj).__name__}, not a state_dict")
    if isinstance(obj.get("state_dict"), dict):
        return obj["state_dict"], dict(obj.get(META_KEY) or {})
    return obj, {}


def read_meta(path: str | Path) -> dict:
    """The metadata of a weight file (empty for a plain state_dict)."""
    return load(path)[1]
