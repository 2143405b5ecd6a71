"""Where a method's pretrained weights enter: declared per method on its config class (no heavy imports here).

A method's config class lists its sources in ``init_sources`` and describes the paper's starting point in
``paper_init`` (empty: the paper trains from scratch). ``bench.init_record`` turns them into a run's ``init``
column and warns when a run starts the paper's pretrained part from random weights.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InitSource:
    """One pretrained component of a method.

    ``weights``: dotted config key of a local weights file; ``hub``: dotted key of a flag that loads timm hub weights
    for the model named at ``hub_model`` (plus ``hub_tag``, e.g. ``.openai``). ``paper``: the paper starts this
    component from pretrained weights; a run with none of its ``paper`` components pretrained is a random-init
    deviation from the paper.
    """

    component: str
    weights: str | None = None
    hub: str | None = None
    hub_model: str | None = None
    hub_tag: str = ""
    paper: bool = True


# The shared backbone: ``backbone.weights`` (a local file) or timm hub weights for ``backbone.name``.
BACKBONE_INIT = InitSource("backbone", "backbone.weights", hub="backbone.pretrained", hub_model="backbone.name")
