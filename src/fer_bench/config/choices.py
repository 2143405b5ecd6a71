"""Choice-valued config keys: the allowed values live on the dataclass field (``metadata["choices"]``), and one
validator walks a schema instance beside the merged config and refuses any value outside them, naming the key, the
value, the choices and the closest one."""

from __future__ import annotations

import difflib
from dataclasses import MISSING, field, fields, is_dataclass
from typing import Any

from fer_bench.config.errors import ConfigError


def choice(*values: Any, default: Any = MISSING) -> Any:
    """A dataclass field whose value is one of ``values``; its default is ``default``, else the first value."""
    default = values[0] if default is MISSING else default
    if default not in values:
        raise ValueError(f"default {default!r} is not one of the choices {values}")
    return field(default=default, metadata={"choices": values})


def choice_fields(schema: Any, prefix: str = "") -> dict[str, tuple]:
    """``{dotted key: choices}`` of every choice-valued field of the dataclass instance ``schema``, nested ones
    included."""
    found: dict[str, tuple] = {}
    for f in fields(schema):
        key = f"{prefix}{f.name}"
        if "choices" in f.metadata:
            found[key] = tuple(f.metadata["choices"])
        value = getattr(schema, f.name)
        if is_dataclass(value) and not isinstance(value, type):
            found.update(choice_fields(value, key + "."))
    return found


def refusal(key: str, value: Any, allowed: tuple | list) -> str:
    """The message for ``key=value`` outside ``allowed``: the choices and the closest one."""
    shown = ", ".join("null" if a is None else str(a) for a in allowed)
    close = difflib.get_close_matches(str(value), [str(a) for a in allowed if a is not None], n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"config key '{key}' = {value!r} is not one of: {shown}{hint}"


def check_choices(cfg: Any, schema: Any) -> None:
    """Raise :class:`ConfigError` for the first choice-valued key of ``cfg`` (a merged config) whose value is not
    among the choices declared on ``schema`` (the dataclass instance it was built from)."""
    for key, allowed in choice_fields(schema).items():
        value = _select(cfg, key)
        if value is not MISSING and value not in allowed:
            raise ConfigError(refusal(key, value, allowed))


def _select(cfg: Any, dotted: str) -> Any:
    node = cfg
    for part in dotted.split("."):
        if node is None or part not in node:
            return MISSING
        node = node[part]
    return node
