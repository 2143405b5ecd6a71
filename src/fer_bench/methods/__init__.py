"""The method registry: the built-in methods (one package each under ``methods/``) and third-party ones found
through the entry-point group ``fer_bench.methods`` (each entry point names a :class:`MethodSpec`).

Nothing here imports torch: a method package's ``__init__`` holds its ``SPEC`` and its config schema only.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path

from fer_bench.methods.spec import MethodSpec, load_reference

ENTRY_POINT_GROUP = "fer_bench.methods"

__all__ = ["ENTRY_POINT_GROUP", "MethodSpec", "UnknownMethod", "load_reference", "method_keys", "registry", "spec_of"]


class UnknownMethod(KeyError):
    """``method=<key>`` names no registered method."""

    def __str__(self) -> str:
        return self.args[0]


def _built_in() -> list[MethodSpec]:
    specs = []
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.ispkg:
            specs.append(importlib.import_module(f"{__name__}.{info.name}").SPEC)
    return specs


def _plugins() -> list[MethodSpec]:
    specs = []
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        spec = load_reference(entry.value)
        if not isinstance(spec, MethodSpec):
            raise ValueError(f"entry point {entry.name} = {entry.value} ({ENTRY_POINT_GROUP}) is not a MethodSpec")
        specs.append(spec)
    return specs


@cache
def registry() -> dict[str, MethodSpec]:
    """Every method by key, built-ins first; a plugin may not take a built-in's key."""
    found: dict[str, MethodSpec] = {}
    for spec in [*_built_in(), *_plugins()]:
        if spec.key in found and found[spec.key] is not spec:
            raise ValueError(f"two methods register the key {spec.key!r}: {found[spec.key].module} and {spec.module}")
        found[spec.key] = spec
    return found


def method_keys() -> list[str]:
    return sorted(registry())


def spec_of(key: str) -> MethodSpec:
    """The spec of ``method=<key>``; an unknown key names the close ones and every registered key."""
    specs = registry()
    if key not in specs:
        close = difflib.get_close_matches(str(key), specs, n=3)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise UnknownMethod(f"unknown method '{key}'{hint} (registered: {', '.join(sorted(specs))})")
    return specs[key]
