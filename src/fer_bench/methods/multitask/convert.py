"""Opt-in converter for the published HSEmotion checkpoints (av-savchenko/hsemotion,
av-savchenko/face-emotion-recognition ``models/``).

The official ``.pt`` files are whole pickled modules tied to timm 0.4.5 / 0.9 (``torch.load(weights_only=False)``).
Unpickling runs code named by the file, so it is done only here, only on request, with a loud warning. The
file's own classes are never imported: every class outside torch is replaced by an empty ``nn.Module`` stand-in,
which is enough to read the parameters and buffers. The network is then rebuilt with the current timm (or the
MobileFaceNet of ``models/``), the weights loaded strictly, and the fer-bench ``MultitaskNet`` state_dict
(``backbone.*`` + ``head.*``) written with its metadata (``models.weights_file``), loadable with
``weights_only=True`` (``method.weights`` / ``backbone.weights``).

Both released layouts convert: expression-only heads ``Linear(D, C)`` (``enet_b0_8_best_afew``, ``enet_b2_8``,
``enet_b2_7``, ...) and multitask heads ``Linear(D, C + 2)`` (``*_va_mtl``: C logits, valence, arousal). C is 7 or 8 in
HSEmotion's alphabetical class order (``hsemotion/facial_emotions.py``, ``idx_to_class``); the logit rows are
reordered into fer-bench's ``basic7`` / ``basic8`` space. The metadata records the model's input recipe, which is
HSEmotion's own, not timm's ``pretrained_cfg`` (e.g. MobileViT: 224 px, ImageNet mean/std).
"""

from __future__ import annotations

import hashlib
import pickle
import types
import warnings
from pathlib import Path

import torch
from torch import nn

from fer_bench import labels as L
from fer_bench.methods.multitask.net import MultitaskNet, build_multitask_net
from fer_bench.models import preprocessing, weights_file

# modules resolved normally (pickle protocol 2 names builtins and copyreg by their Python 2 names)
TRUSTED_MODULES = ("torch", "collections", "builtins", "__builtin__", "copyreg", "copy_reg", "_codecs", "numpy")
# the attribute holding the classifier in the official files (``enet_*``: classifier, ``mbf_*``: fc, MobileViT: head.fc)
CLASSIFIER_ATTRS = ("classifier", "fc", "head.fc", "head")
# head width -> (classes, valence/arousal outputs) of the HSEmotion releases
HEAD_LAYOUTS = {7: (7, False), 8: (8, False), 9: (7, True), 10: (8, True)}
# classes -> (HSEmotion's native order in labels.NATIVE_TABLES, fer-bench space)
CLASS_ORDERS = {7: ("hsemotion7", "basic7"), 8: ("hsemotion8", "basic8")}
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
# input recipe per architecture (HSEmotion's facial_emotions.py: B0 224, B2 260, ImageNet mean/std; EmotiEffLib:
# MobileViT 224 ImageNet, MobileFaceNet 112 with mean = std = 0.5); first substring of the backbone name that matches
RECIPES = (
    ("efficientnet_b0", 224, *IMAGENET),
    ("efficientnet_b2", 260, *IMAGENET),
    ("mobilevit", 224, *IMAGENET),
    ("mobilefacenet", 112, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
)


class _StandIn(nn.Module):
    """Takes the place of any non-torch class found in the pickle; keeps the unpickled module state."""

    def __init__(self, *args, **kwargs):
        super().__init__()


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module.split(".")[0] in TRUSTED_MODULES:
            return super().find_class(module, name)
        return type(name, (_StandIn,), {"__module__": f"fer_bench.convert.standin.{module}"})


STANDIN_PICKLE = types.SimpleNamespace(Unpickler=_Unpickler, load=pickle.load, __name__="fer_bench_standin_pickle")


def load_pickled_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The state_dict of a whole pickled module — UNSAFE: unpickling executes what the file names."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    warnings.warn(f"unpickling {path} with weights_only=False: a pickle can run arbitrary code; convert only "
                  "files from a source you trust", UserWarning, stacklevel=2)
    obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=STANDIN_PICKLE)
    if isinstance(obj, nn.Module):
        return obj.state_dict()
    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    raise ValueError(f"{path} holds a {type(obj).__name__}, not a pickled module or a state_dict")


def _split_classifier(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(backbone state, head state): the head is the last Linear under the first classifier attribute found
    (a bare ``Linear`` or ``Sequential(Linear, ...)``)."""
    for attr in CLASSIFIER_ATTRS:
        weights = [k for k, v in state.items() if k.startswith(f"{attr}.") and k.endswith(".weight") and v.ndim == 2]
        if weights:
            prefix = weights[-1].removesuffix("weight")
            head = {"weight": state[f"{prefix}weight"], "bias": state[f"{prefix}bias"]}
            return {k: v for k, v in state.items() if not k.startswith(f"{attr}.")}, head
    raise ValueError(f"no classifier Linear under {', '.join(CLASSIFIER_ATTRS)} in the checkpoint")


def head_layout(width: int, src: str | Path = "") -> tuple[int, bool]:
    """(classes, valence/arousal outputs) of a released head with ``width`` outputs."""
    if width not in HEAD_LAYOUTS:
        raise ValueError(f"{src}: the classifier has {width} outputs; HSEmotion models have 7 or 8 expression "
                         "logits, optionally followed by valence and arousal (7, 8, 9 or 10 outputs)")
    return HEAD_LAYOUTS[width]


def to_space_order(head: dict[str, torch.Tensor], num_classes: int, va: bool) -> dict[str, torch.Tensor]:
    """The head with its logit rows moved from HSEmotion's alphabetical order into fer-bench's space order
    (valence and arousal rows stay last)."""
    native, space_name = CLASS_ORDERS[num_classes]
    canonical = L.NATIVE_TABLES[native].to_canonical
    rows = [canonical.index(cid) for cid in L.space(space_name)] + ([num_classes, num_classes + 1] if va else [])
    return {k: v[rows].clone() for k, v in head.items()}


def recipe(backbone: str) -> dict:
    """HSEmotion's input size, mean and std for ``backbone`` (empty when the architecture is not in ``RECIPES``)."""
    for key, size, mean, std in RECIPES:
        if key in backbone:
            return {"input_size": size, "mean": list(mean), "std": list(std)}
    return {}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert(src: str | Path, backbone: str, out: str | Path, input_size: int | None = None,
            mean: list[float] | None = None, std: list[float] | None = None) -> tuple[MultitaskNet, dict]:
    """Rebuild ``backbone`` + head with the current libraries, load the pickled weights strictly, save ``out``
    (state_dict + metadata) and return the network and its metadata. ``input_size``/``mean``/``std`` override
    the architecture's recipe (``RECIPES``, else the backbone's own config)."""
    src = Path(src)
    backbone_state, head_state = _split_classifier(load_pickled_state(src))
    num_classes, va = head_layout(head_state["weight"].shape[0], src)
    wanted = types.SimpleNamespace(input_size=input_size, mean=mean, std=std)
    known = recipe(backbone)
    net, own = build_multitask_net(backbone, num_classes, preprocessing.requested_size(wanted, None, known), va=va)
    try:
        net.backbone.load_state_dict(backbone_state)
        net.head.load_state_dict(to_space_order(head_state, num_classes, va))
    except RuntimeError as e:
        raise ValueError(f"{src} does not fit backbone '{backbone}': {e}") from None
    info = preprocessing.resolve(wanted, own, recipe=known)
    native, space_name = CLASS_ORDERS[num_classes]
    meta = {
        "format": "hsemotion", "backbone": backbone, "space": space_name, "num_classes": num_classes, "va": va,
        "class_names": L.class_names(space_name), "source_classes": list(L.NATIVE_TABLES[native].native_names),
        "input_size": info.image_size, "mean": list(info.mean), "std": list(info.std),
        "recipe": "command line" if input_size or mean or std else ("hsemotion" if known else "backbone config"),
        "source": src.name, "source_sha256": _sha256(src),
    }
    weights_file.save(net.state_dict(), meta, out)
    return net, meta
