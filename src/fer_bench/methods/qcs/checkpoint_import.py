"""Import of the released QCS / DCS checkpoints (Wang et al., AAAI 2025; https://github.com/birdwcp/QCS, commit
293f28f) into fer-bench's :class:`~fer_bench.methods.qcs.net.QCSNet`.

The official training scripts save ``{"epoch", "state_dict", "best_acc", "optimizer", "recorder_m", "recorder"}``
with ``torch.save``: the state_dict of ``nn.DataParallel(pyramid_trans_expr)`` (keys prefixed ``module.``) next to
pickled recorder objects, so the file needs ``weights_only=False`` — done only on request (``trust_pickle``), with
every class outside torch replaced by an empty stand-in (never imported). A whole pickled model or a plain state
dict in the same key layout is read the same way.

Key layout (official name → fer-bench name):

- ``ir_back.{input_layer,body1..3}.*`` → ``trunk.*``; ``conv1..3`` → ``tokens.reduce.0..2``;
  ``embed_q`` / ``embed_k`` / ``embed_v.proj`` (or the newer names ``embed_1..3``) → ``tokens.embed.0..2``;
- ``VIT_{base,cross}.{cls_token,pos_embed,blocks.i.{norm1,attn,norm2,mlp},norm}`` → ``vit_{base,cross}.*``;
  ``VIT_*.se_block.linear1/2`` and ``VIT_*.head.linear`` → ``head_{base,cross}.linear1/2`` and ``.head``;
- ``cross_attention_1..3.*`` → ``csa.0..2.*`` (``theta`` only in QCS; DCS files have none);
- registered but unused in the official forward, dropped: ``ir_back.output_layer``; in each ViT ``patch_embed``,
  ``eca_block``, ``CON1``, ``IRLinear1/2`` and every block's ``conv``; ``fusion.*`` (``DCS_8cls_affectnet.py``).

The heads' rows are reordered from the official label order of the training set (``labels``) into fer-bench's
canonical order (``basic7`` / ``basic8``), so class i of the converted model is class i of a fer-bench run.
"""

from __future__ import annotations

import math
import pickle
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from fer_bench.atomic import atomic_save
from fer_bench.labels import class_names
from fer_bench.methods.qcs.net import QCSNet
from fer_bench.models import backbones
from fer_bench.models.weights_file import load_state_into

OFFICIAL_HEADS = 8  # vit_model_*cls.py: Attention sets self.num_heads = 8 whatever it is given
# Head order of each official training set: the confusion-matrix labels of main_QCS_raf_db.py, main_QCS_ferplus.py
# and main_QCS_affectnet-7/8.py (AffectNet's native order; 7 classes = the first 7).
OFFICIAL_LABEL_ORDERS: dict[str, tuple[str, ...]] = {
    "rafdb": ("surprise", "fear", "disgust", "happy", "sad", "anger", "neutral"),
    "ferplus": ("neutral", "happy", "surprise", "sad", "anger", "disgust", "fear", "contempt"),
    "affectnet": ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt"),
}
_VIT = r"VIT_(?P<vit>base|cross)\."
_DEAD = re.compile(r"ir_back\.output_layer\.|VIT_(base|cross)\.(patch_embed|eca_block|CON1|IRLinear[12])\.|"
                   r"VIT_(base|cross)\.blocks\.\d+\.conv\.|fusion\.")
_RULES: list[tuple[re.Pattern, Callable[[re.Match], str]]] = [
    (re.compile(r"ir_back\.(?P<rest>(input_layer|body[123])\..+)"), lambda m: f"trunk.{m['rest']}"),
    (re.compile(r"conv(?P<i>[123])\.(?P<p>weight|bias)"), lambda m: f"tokens.reduce.{int(m['i']) - 1}.{m['p']}"),
    (re.compile(r"embed_(q|1)\.(?P<j>[01])\.(?P<p>weight|bias)"), lambda m: f"tokens.embed.0.{m['j']}.{m['p']}"),
    (re.compile(r"embed_(k|2)\.0\.(?P<p>weight|bias)"), lambda m: f"tokens.embed.1.0.{m['p']}"),
    (re.compile(r"embed_(v|3)\.proj\.(?P<p>weight|bias)"), lambda m: f"tokens.embed.2.0.{m['p']}"),
    (re.compile(rf"{_VIT}(?P<rest>cls_token|pos_embed|norm\.(weight|bias)|"
                r"blocks\.\d+\.(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(weight|bias))"),
     lambda m: f"vit_{m['vit']}.{m['rest']}"),
    (re.compile(rf"{_VIT}se_block\.(?P<rest>linear[12]\.(weight|bias))"), lambda m: f"head_{m['vit']}.{m['rest']}"),
    (re.compile(rf"{_VIT}head\.linear\.(?P<p>weight|bias)"), lambda m: f"head_{m['vit']}.head.{m['p']}"),
    (re.compile(r"cross_attention_(?P<s>[123])\.(?P<rest>theta|(norm1|norm2|proj|mlp\.fc1|mlp\.fc2)\.(weight|bias))"),
     lambda m: f"csa.{int(m['s']) - 1}.{m['rest']}"),
]


def fer_key(official: str) -> str | None:
    """The fer-bench name of an official key (``module.`` stripped); None for a registered-but-unused module.

    Raises KeyError for a key of neither kind (a file of another model)."""
    key = official.removeprefix("module.")
    if _DEAD.match(key):
        return None
    for pattern, rename in _RULES:
        m = pattern.fullmatch(key)
        if m:
            return rename(m)
    raise KeyError(official)


def read_official(path: str | Path, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The official-layout state_dict held by ``path``: a training checkpoint (``state_dict`` entry), a whole pickled
    model or a plain state_dict. Files that are not plain tensors need ``trust_pickle`` (unpickling runs code)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if not trust_pickle:
            raise ValueError(
                f"{path} holds pickled objects besides tensors (the official checkpoints pickle their recorders): "
                f"loading it runs code the file names. Add --trust-pickle if it comes from a source you trust "
                f"(e.g. the QCS release). ({str(e).splitlines()[0]})") from None
        from fer_bench.methods.multitask.convert import (
            STANDIN_PICKLE,  # the stand-in unpickler of the HSEmotion converter
        )

        warnings.warn(f"unpickling {path} with weights_only=False: a pickle can run arbitrary code; convert only "
                      "files from a source you trust", UserWarning, stacklevel=2)
        obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=STANDIN_PICKLE)
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    elif isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: expected a QCS checkpoint, a pickled model or a state_dict; "
                         f"got {type(obj).__name__}")
    return dict(obj)


@dataclass
class Architecture:
    """What a checkpoint fixes about the network (read from tensor shapes)."""

    num_classes: int
    dim: int
    base_depth: int
    cross_depth: int
    units: tuple[int, int, int]
    image_size: int
    branches: int

    def config_overrides(self) -> dict[str, object]:
        """The ``method.*`` values a fer-bench QCS run needs to load this checkpoint (with their defaults)."""
        return {"method.dim": self.dim, "method.heads": OFFICIAL_HEADS, "method.base_depth": self.base_depth,
                "method.cross_depth": self.cross_depth, "method.image_size": self.image_size,
                "method.branches": self.branches, "method.csa.variant": "sd" if self.branches == 4 else "s",
                "method.trunk": "ir50"}


def _count(keys: list[str], pattern: str) -> int:
    return len({m.group(1) for k in keys if (m := re.fullmatch(pattern, k))})


def architecture(state: Mapping[str, torch.Tensor]) -> Architecture:
    """Classes, width, depths, IR units, input size and branch count of a mapped (fer-bench-named) state."""
    keys = list(state)
    tokens = state["vit_base.pos_embed"].shape[1] - 1
    grid = math.isqrt(tokens // 3)
    if 3 * grid * grid != tokens:
        raise ValueError(f"pos_embed has {tokens} tokens, not 3 square grids")
    units = tuple(_count(keys, rf"trunk\.body{s}\.(\d+)\..+") for s in (1, 2, 3))
    return Architecture(
        num_classes=state["head_base.head.weight"].shape[0], dim=state["vit_base.cls_token"].shape[-1],
        base_depth=_count(keys, r"vit_base\.blocks\.(\d+)\..+"),
        cross_depth=_count(keys, r"vit_cross\.blocks\.(\d+)\..+"),
        units=units, image_size=32 * grid,  # IR-50 halves the input; the last scale reaches 1/32 after its embed
        branches=4 if any(k.endswith(".theta") for k in keys) else 2)


def head_permutation(labels: str, num_classes: int) -> tuple[str, list[int]]:
    """(fer-bench space, official row of each canonical class) for a model trained with ``labels``'s order."""
    if labels not in OFFICIAL_LABEL_ORDERS:
        raise ValueError(f"labels={labels!r}: expected one of {', '.join(OFFICIAL_LABEL_ORDERS)} (the data set the "
                         "checkpoint was trained on fixes its class order)")
    order = OFFICIAL_LABEL_ORDERS[labels][:num_classes]
    if len(order) != num_classes:
        raise ValueError(f"labels={labels} has {len(order)} classes but the checkpoint's heads have {num_classes}")
    space = {7: "basic7", 8: "basic8"}.get(num_classes)
    if space is None or sorted(order) != sorted(class_names(space)):
        raise ValueError(f"labels={labels} with {num_classes} classes does not match a fer-bench label space")
    return space, [order.index(name) for name in class_names(space)]


@dataclass
class Imported:
    net: QCSNet
    arch: Architecture
    space: str
    dropped: list[str] = field(default_factory=list)


def import_state(official: Mapping[str, torch.Tensor], labels: str, source: str = "checkpoint") -> Imported:
    """Map an official state_dict onto a new QCSNet (strictly: every fer-bench key filled, every official key used
    or known to be dead) and reorder the heads into fer-bench's class order."""
    state, dropped, unknown = {}, [], []
    for key, value in official.items():
        try:
            name = fer_key(key)
        except KeyError:
            unknown.append(key)
            continue
        (dropped.append(key) if name is None else state.__setitem__(name, value))
    if unknown:
        raise ValueError(f"{source}: {len(unknown)} key(s) are not in the official QCS layout: "
                         f"{', '.join(unknown[:6])}{' ...' if len(unknown) > 6 else ''}")
    try:
        arch = architecture(state)
    except KeyError as e:
        raise ValueError(f"{source}: not a QCS/DCS state_dict (no {e.args[0]})") from None
    space, rows = head_permutation(labels, arch.num_classes)
    for head in ("head_base", "head_cross"):
        for p in ("weight", "bias"):
            state[f"{head}.head.{p}"] = state[f"{head}.head.{p}"][rows]
    trunk, _ = backbones.create("ir50", features_only=True, units=arch.units)
    net = QCSNet(trunk, arch.num_classes, dim=arch.dim, heads=OFFICIAL_HEADS,
                 base_depth=arch.base_depth, cross_depth=arch.cross_depth, branches=arch.branches,
                 csa_variant="sd" if arch.branches == 4 else "s", image_size=arch.image_size)
    load_state_into(net, state, source, what="the QCS network it describes")
    return Imported(net, arch, space, dropped)


def convert_checkpoint(src: str | Path, out: str | Path, labels: str, trust_pickle: bool = False) -> Imported:
    """Read an official QCS/DCS checkpoint, map it, save ``out`` as a plain fer-bench state_dict."""
    imported = import_state(read_official(src, trust_pickle), labels, str(src))
    atomic_save(imported.net.state_dict(), out)
    return imported
