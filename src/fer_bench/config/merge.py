"""Merging config layers strictly: every key of a layer must exist in the schema (else the message names the key,
its source and the closest valid keys), every value must fit the key's type."""

from __future__ import annotations

import difflib
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from fer_bench.config.choices import check_choices
from fer_bench.config.errors import ConfigError

# Keys that pick files rather than set values; they are pulled from the command line before merging.
SELECTOR_KEYS = ("method", "data", "profile")


def _flat_keys(node: Any, prefix: str = "") -> list[str]:
    if not isinstance(node, DictConfig):
        return [prefix] if prefix else []
    keys = []
    for k in node.keys():
        path = f"{prefix}.{k}" if prefix else str(k)
        child = node._get_node(k)
        keys.append(path)
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            keys.extend(_flat_keys(child, path))
    return keys


def _unknown_key_message(key: str, source: str, schema: DictConfig) -> str:
    valid = _flat_keys(schema)
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
    parent = key.rsplit(".", 1)[0] if "." in key else ""
    siblings = [k for k in valid if k.rsplit(".", 1)[0] == parent and k.count(".") == key.count(".")]
    msg = f"unknown config key '{key}' (from {source})"
    if close:
        msg += f"; did you mean {' or '.join(repr(c) for c in close)}?"
    if siblings:
        msg += f"\n  valid keys{' under ' + parent if parent else ''}: {', '.join(sorted(siblings))}"
    return msg


def _schema_root(node: DictConfig) -> DictConfig:
    while node._get_parent() is not None:
        node = node._get_parent()
    return node


def _check_keys(cfg: DictConfig, schema: DictConfig, source: str, prefix: str = "") -> None:
    for k in cfg.keys():
        path = f"{prefix}.{k}" if prefix else str(k)
        if k not in schema:
            raise ConfigError(_unknown_key_message(path, source, _schema_root(schema)))
        child, sub = cfg._get_node(k), schema._get_node(k)
        open_node = isinstance(sub, DictConfig) and sub._is_none()
        if isinstance(child, DictConfig) and isinstance(sub, DictConfig) and not open_node:
            _check_keys(child, sub, source, path)


def merge(base: DictConfig, extra: DictConfig | dict, source: str) -> DictConfig:
    """``extra`` over ``base``; unknown keys and ill-typed values raise :class:`ConfigError` naming ``source``."""
    extra = extra if isinstance(extra, DictConfig) else OmegaConf.create(extra)
    _check_keys(extra, base, source)
    try:
        return OmegaConf.merge(base, extra)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", "") or "?"
        reason = e.msg if hasattr(e, "msg") else e
        raise ConfigError(f"bad value for config key '{key}' (from {source}): {reason}") from None


def strict_schema(schema: Any) -> DictConfig:
    """The structured config of a dataclass (class or instance), closed to new keys."""
    node = OmegaConf.structured(schema)
    OmegaConf.set_struct(node, True)
    return node


def split_selectors(overrides: list[str]) -> tuple[dict[str, str], list[str]]:
    """Separate ``method=``, ``data=`` and ``profile=`` (file selectors) from value overrides."""
    selectors, rest = {}, []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"command-line argument '{item}' is not of the form key=value")
        key, value = item.split("=", 1)
        if key in SELECTOR_KEYS:
            selectors[key] = value
        else:
            rest.append(item)
    return selectors, rest


def parse_overrides(overrides: list[str]) -> DictConfig:
    try:
        return OmegaConf.from_dotlist(overrides)
    except Exception as e:
        raise ConfigError(f"cannot parse command-line overrides {overrides}: {e}") from None


def dataclass_overrides(cls: type, overrides: list[str], source: str) -> dict:
    """Validate ``key=value`` overrides against a dataclass (keys, types, choices); returns its merged fields as a
    plain dict."""
    cfg = merge(strict_schema(cls), parse_overrides(overrides), source)
    check_choices(cfg, cls())
    return OmegaConf.to_container(cfg, resolve=True)
