"""MethodSpec: everything the rest of fer-bench needs to know about a method, stated by the method's own package.

A spec is plain data plus dotted references (``"package.module:Name"``) to the heavy parts, imported only when they
are used; so finding, listing and validating methods never imports torch. The engine, the config, the CLI, perf
and the generic tests ask the spec — no code outside ``methods/<key>/`` names a method key.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

# What a method can do beyond train → test (the generic tests and verbs ask for these):
CAPABILITIES = frozenset({
    "export",  # ONNX export of its inference path (deploy/export.py)
    "cross_domain",  # trained once, tested on other data sets (eval_on=[...])
    "valence_arousal",  # predicts valence and arousal beside the expression
    "backbone_input",  # reads backbone.input_size / mean / std (otherwise the method has its own input recipe)
})
LOOPS = ("fit", "scenario")


def load_reference(reference: str) -> Any:
    """The object named by ``"package.module:attribute"``."""
    module, _, attribute = reference.partition(":")
    obj = importlib.import_module(module)
    for part in attribute.split(".") if attribute else ():
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class MethodSpec:
    """One method, as fer-bench sees it.

    ``key``: the ``method=`` value. ``config``: the dataclass of its ``method.*`` keys (torch-free). ``module``: its
    LightningModule class, built as ``Class(cfg, class_names)``; the module states its data needs
    (``data_needs()``: image size, normalisation, sampler, labels). ``loop``: ``fit`` (train → select → test, by the
    engine's fit loop) or ``scenario`` (a sequence of steps, by the engine's scenario loop and the module's hooks).
    ``capabilities``: a subset of :data:`CAPABILITIES`. ``tiny``: dotted overrides on top of ``profile=cpu`` that make
    a run take seconds (tests, perf). ``check``: ``"module:function"`` called with the merged config, raising
    ``ValueError`` for a combination the method refuses (torch-free). ``commands``: extra CLI verbs
    (verb → ``"module:function"`` taking the argument list). ``converters``: checkpoint formats for ``fer-bench convert
    format=…`` (format → ``"module:function"`` taking the argument list). ``perf``: the module holding the method's
    side of ``fer-bench perf`` (``BACKBONE_KEY``, ``plain_loss``, optionally ``fitted`` and ``targets``).
    ``experiment``: ``"package:file.yaml"``, the method's experiment YAML (profiles, faithful block) when the project
    has no ``experiments/<key>.yaml`` (a plugin ships its own).
    """

    key: str
    summary: str
    config: type
    module: str
    loop: Literal["fit", "scenario"] = "fit"
    capabilities: frozenset[str] = frozenset()
    tiny: tuple[str, ...] = ()
    check: str | None = None
    commands: MappingProxyType | dict[str, str] = field(default_factory=dict)
    converters: MappingProxyType | dict[str, str] = field(default_factory=dict)
    perf: str | None = None
    experiment: str | None = None

    def __post_init__(self) -> None:
        if self.loop not in LOOPS:
            raise ValueError(f"method {self.key!r}: loop {self.loop!r} is not one of {', '.join(LOOPS)}")
        unknown = set(self.capabilities) - CAPABILITIES
        if unknown:
            raise ValueError(f"method {self.key!r}: unknown capabilities {sorted(unknown)}; known: "
                             f"{', '.join(sorted(CAPABILITIES))}")
        default_name = getattr(self.config, "name", None)
        if default_name != self.key:
            raise ValueError(f"method {self.key!r}: its config class {self.config.__name__} has name={default_name!r}")
        object.__setattr__(self, "capabilities", frozenset(self.capabilities))
        object.__setattr__(self, "tiny", tuple(self.tiny))
        object.__setattr__(self, "commands", MappingProxyType(dict(self.commands)))
        object.__setattr__(self, "converters", MappingProxyType(dict(self.converters)))

    def can(self, capability: str) -> bool:
        if capability not in CAPABILITIES:
            raise ValueError(f"unknown capability {capability!r}; known: {', '.join(sorted(CAPABILITIES))}")
        return capability in self.capabilities

    def module_class(self) -> type:
        """The LightningModule class (imports torch)."""
        return load_reference(self.module)

    def build(self, cfg, class_names: list[str], **kwargs):
        """A fresh module for ``cfg`` over ``class_names``."""
        return self.module_class()(cfg, list(class_names), **kwargs)

    def check_config(self, cfg) -> None:
        """Raise ``ValueError`` for a config this method refuses (no-op without a ``check``)."""
        if self.check:
            load_reference(self.check)(cfg)

    def experiment_file(self) -> Path | None:
        """The experiment YAML the spec ships (``experiment``), or ``None``."""
        if not self.experiment:
            return None
        package, _, name = self.experiment.partition(":")
        return Path(str(resources.files(package).joinpath(name)))

    def perf_side(self):
        """The module with the method's perf hooks, or ``None``."""
        return importlib.import_module(self.perf) if self.perf else None
