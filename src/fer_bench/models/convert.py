"""Opt-in converter for the published HSEmotion checkpoints (specs/multitask.md §6 quirk 5).

The official ``.pt`` files are whole pickled modules tied to timm 0.4.5 / 0.9 (``torch.load(weights_only=False)``).
Unpickling runs code named by the file, so it is done only here, only on request, with a loud warning. The
file's own classes are never imported: every class outside torch is replaced by an empty ``nn.Module`` stand-in,
which is enough to read the parameters and buffers. The network is then rebuilt with the current timm (or the
MobileFaceNet of ``models/``), the weights loaded strictly, and a plain ``state_dict`` of the fer-bench
``MultitaskNet`` written (``backbone.*`` + ``head.*``), loadable with ``weights_only=True`` (``method.weights``).
"""

from __future__ import annotations

import pickle
import types
import warnings
from pathlib import Path

import torch
from torch import nn

from fer_bench.atomic import atomic_save
from fer_bench.models.multitask_net import MultitaskNet, build_multitask_net

# modules resolved normally (pickle protocol 2 names builtins and copyreg by their Python 2 names)
TRUSTED_MODULES = ("torch", "collections", "builtins", "__builtin__", "copyreg", "copy_reg", "_codecs", "numpy")
# the attribute holding the classifier in the official files (specs/multitask.md §3)
CLASSIFIER_ATTRS = ("classifier", "fc", "head.fc", "head")


class _StandIn(nn.Module):
    """Takes the place of any non-torch class found in the pickle; keeps the unpickled module state."""

    def __init__(self, *args, **kwargs):
        super().__init__()


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module.split(".")[0] in TRUSTED_MODULES:
            return super().find_class(module, name)
        return type(name, (_StandIn,), {"__module__": f"fer_bench.convert.standin.{module}"})


_PICKLE = types.SimpleNamespace(Unpickler=_Unpickler, load=pickle.load, __name__="fer_bench_standin_pickle")


def load_pickled_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The state_dict of a whole pickled module — UNSAFE: unpickling executes what the file names."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    warnings.warn(f"unpickling {path} with weights_only=False: a pickle can run arbitrary code; convert only "
                  "files from a source you trust", UserWarning, stacklevel=2)
    obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_PICKLE)
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


def convert(src: str | Path, backbone: str, out: str | Path, image_size: int | None = None) -> MultitaskNet:
    """Rebuild ``backbone`` + head with the current libraries, load the pickled weights strictly, save
    ``out`` (a plain state_dict) and return the network."""
    backbone_state, head_state = _split_classifier(load_pickled_state(src))
    num_classes = head_state["weight"].shape[0] - 2
    if num_classes < 2:
        raise ValueError(f"{src}: the classifier has {head_state['weight'].shape[0]} outputs; a multitask network "
                         "needs classes + valence + arousal")
    net, _ = build_multitask_net(backbone, num_classes, image_size)
    try:
        net.backbone.load_state_dict(backbone_state)
        net.head.load_state_dict(head_state)
    except RuntimeError as e:
        raise ValueError(f"{src} does not fit backbone '{backbone}': {e}") from None
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(net.state_dict(), out)
    return net
