"""Argument helpers of the ``fer-bench`` verbs (``key=value`` lists), shared by the CLI and the verbs a method adds."""

from __future__ import annotations

from fer_bench.config import ConfigError


def pop_arg(args: list[str], key: str, default: str | None = None) -> tuple[str | None, list[str]]:
    """The value of ``key=`` (the last one given, else ``default``) and the other arguments."""
    rest, value = [], default
    for a in args:
        if a.startswith(f"{key}="):
            value = a.split("=", 1)[1]
        else:
            rest.append(a)
    return value, rest



def verb_args(args: list[str], usage: str, required: tuple[str, ...], optional: dict[str, str]) -> dict[str, str]:
    """``key=value`` arguments of a run-level verb: every required key present, no unknown key."""
    values = dict(optional)
    for a in args:
        key, sep, value = a.partition("=")
        if not sep or key not in (*required, *optional):
            raise ConfigError(f"unexpected argument {a!r}\nusage: {usage}")
        values[key] = value
    missing = [k for k in required if k not in values]
    if missing:
        raise ConfigError(f"missing {', '.join(k + '=' for k in missing)}\nusage: {usage}")
    return values



def three_floats(text: str, key: str) -> list[float] | None:
    """``0.5,0.5,0.5`` → three floats (None for an empty value)."""
    if not text:
        return None
    try:
        values = [float(v) for v in text.strip("[]").split(",")]
    except ValueError:
        raise ConfigError(f"{key}={text}: give three comma-separated numbers (R,G,B)") from None
    if len(values) != 3:
        raise ConfigError(f"{key}={text}: give three comma-separated numbers (R,G,B)")
    return values

