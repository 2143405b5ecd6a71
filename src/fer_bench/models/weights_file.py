"""fer-bench weight files and the one strict loader through which every weight file enters a network.

A weight file is a plain state_dict, or one wrapped as ``{"state_dict": {...}, ...}`` (a Lightning checkpoint, or
what ``fer-bench convert`` writes: the tensors plus, under ``"fer_bench"``, what the network needs to be rebuilt and
fed — backbone, classes, valence/arousal outputs, input size, mean, std, source file). Every file is read with
``torch.load(weights_only=True)``: tensors and plain metadata only, never pickled code. A file that needs pickle is
refused; the converters (``fer-bench convert ... --trust-pickle``) are the only place that unpickles, and only when
asked.

:func:`load_weights_into` maps the file's keys onto a module (wrapper prefixes stripped, an optional key map) and
loads them strictly: a missing key, an unexpected key or a shape mismatch raises :class:`WeightsMismatch`, whose
message names the file, lists the first few keys of each kind with their counts, and says what to do.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from fer_bench.atomic import atomic_save

META_KEY = "fer_bench"
SHOWN_KEYS = 6  # keys listed per kind in a mismatch message
FIT_HINT = ("the file must hold this network's state_dict (same architecture and sizes); convert an official "
            "checkpoint first with fer-bench convert")


class PickledWeightsError(ValueError, pickle.UnpicklingError):
    """A weight file that ``weights_only=True`` refuses: it holds pickled Python objects besides tensors."""


class WeightsMismatch(ValueError):
    """A weight file whose keys or shapes do not fit the module; ``report`` says which."""

    def __init__(self, message: str, report: LoadReport):
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class LoadReport:
    """How a weight file's keys met a module's: ``loaded`` module keys, module keys the file lacks (``missing``),
    file keys the module lacks (``unexpected``), ``mismatched`` shapes ("key (file shape) vs (module shape)"), and
    file keys left out on purpose (``ignored``: a classifier, a later stage, another network's part)."""

    path: str
    loaded: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    mismatched: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def problems(self) -> str:
        """'missing: a, b; shape mismatch: c (..) vs (..); unexpected: d', each list cut after a few keys."""
        return "; ".join(f"{kind}: {_first_few(keys)}" for kind, keys in
                         (("missing", self.missing), ("shape mismatch", self.mismatched),
                          ("unexpected", self.unexpected)) if keys)


def _shape(value) -> tuple[int, ...] | None:
    """A tensor's shape; None for the non-tensor extra state a module may keep in its state_dict."""
    return tuple(value.shape) if isinstance(value, torch.Tensor) else None


def _first_few(keys: tuple[str, ...]) -> str:
    shown = ", ".join(keys[:SHOWN_KEYS])
    return shown if len(keys) <= SHOWN_KEYS else f"{shown} ... ({len(keys)} in all)"


def save(state: dict[str, torch.Tensor], meta: dict, path: str | Path) -> Path:
    """Write ``state`` with ``meta`` to ``path`` atomically (parent folders created)."""
    path = Path(path)
    atomic_save({"state_dict": state, META_KEY: meta}, path)
    return path


def read_file(path: str | Path) -> object:
    """The object a weight file holds, read with ``weights_only=True``; a missing file or one that needs pickle
    raises an error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        detail = re.search(r"Unsupported global: [^\n]*? was not an allowed global", str(e))
        if detail is None:
            raise ValueError(f"weights file {path} is not a torch file readable with weights_only=True "
                             f"({str(e).splitlines()[0]})") from None
        raise PickledWeightsError(
            f"weights file {path}: Weights only load failed: it holds pickled Python objects besides tensors "
            f"({detail.group(0)}). fer-bench reads weights with weights_only=True only; if the file comes from a "
            "source you trust, convert it once with fer-bench convert ... --trust-pickle") from None
    except (RuntimeError, EOFError) as e:  # not a torch file, or a truncated one
        raise ValueError(f"weights file {path} is not a torch file readable with weights_only=True: {e}") from None


def load(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(state_dict, metadata) of a weight file; metadata is empty for a plain state_dict."""
    obj = read_file(path)
    if not isinstance(obj, dict):
        raise ValueError(f"weights file {path} holds a {type(obj).__name__}, not a state_dict")
    if isinstance(obj.get("state_dict"), dict):
        return obj["state_dict"], dict(obj.get(META_KEY) or {})
    return obj, {}


def read_meta(path: str | Path) -> dict:
    """The metadata of a weight file (empty for a plain state_dict)."""
    return load(path)[1]


def strip_prefixes(key: str, prefixes: tuple[str, ...]) -> str:
    """A state_dict key without its wrapper prefixes (``module.``, ``model.``, ...), however deeply nested."""
    changed = True
    while changed:
        changed = False
        for prefix in prefixes:
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key


def load_weights_into(module: nn.Module, path: str | Path, **options) -> LoadReport:
    """Load the weight file ``path`` into ``module`` (options: :func:`load_state_into`)."""
    return load_state_into(module, load(path)[0], path, **options)


def load_state_into(module: nn.Module, state: Mapping[str, torch.Tensor], path: str | Path, *,
                    strip: tuple[str, ...] = (), key_map: Callable[[str], str | None] | None = None,
                    ignore: tuple[str, ...] = (), may_miss: tuple[str, ...] = (), strict: bool = True,
                    what: str | None = None, hint: str = FIT_HINT) -> LoadReport:
    """Load ``state`` (read from ``path``, named in messages) into ``module`` and return the report.

    Each file key loses its ``strip`` prefixes and then goes through ``key_map`` (None: left out on purpose); file
    keys under an ``ignore`` prefix that the module lacks are left out too, and a second file key for the same module
    key is unexpected. Module keys ending with a ``may_miss`` suffix may be absent. With ``strict`` any missing key,
    unexpected key or shape mismatch raises :class:`WeightsMismatch` (naming the file and ``what``, with ``hint``)
    and nothing is loaded; without it the fitting keys are loaded and the report returned.
    """
    own = module.state_dict()
    found: dict[str, torch.Tensor] = {}
    unexpected, ignored = [], []
    for key, value in state.items():
        name = strip_prefixes(key, strip)
        name = key_map(name) if key_map else name
        if name is None or (name.startswith(ignore) and name not in own):
            ignored.append(key)
        elif name in own and name not in found:
            found[name] = value
        else:
            unexpected.append(key)
    wrong = [k for k, v in found.items() if _shape(v) != _shape(own[k])]
    missing = [k for k in own if k not in found and not k.endswith(may_miss)]
    report = LoadReport(str(path), tuple(k for k in found if k not in wrong), tuple(missing), tuple(unexpected),
                        tuple(f"{k} {_shape(found[k])} vs {_shape(own[k])}" for k in wrong), tuple(ignored))
    if strict and not report.ok:
        raise WeightsMismatch(f"weights file {path} does not fit {what or type(module).__name__} "
                              f"({report.problems()}): {hint}", report)
    module.load_state_dict({k: found[k] for k in report.loaded}, strict=False)
    return report
