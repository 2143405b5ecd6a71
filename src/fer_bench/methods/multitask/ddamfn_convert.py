"""Convert an official DDAMNet checkpoint (SainingZhang/DDAMFN ``networks/DDAM.py``; HSEmotion's MT-DDAMFN is
``DDAMNet(num_class=10, num_head=2)``) onto fer-bench's ``MultitaskNet`` with the ``ddamfn`` backbone.

Official layout: ``features.<i>.*`` (MixedFeatureNet children 0…8, conv1 … conv_6_sep; residual stages wrap their
blocks in ``.model``), ``cat_head<k>.CoordAtt.*`` (the attention heads), ``Linear.*`` (depthwise 7×7 conv + BN),
``fc.*`` (the classifier, here 8 logits + valence + arousal) and ``bn.*`` (a BatchNorm1d after ``fc`` that the
official forward never calls). Unused official modules (``bn``, every ``conv_dw.bn``/``conv_dw.prelu``, every
head's ``CoordAtt.Linear``) are dropped; every other key must map onto exactly one fer-bench key.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from fer_bench.methods.multitask import convert
from fer_bench.methods.multitask.net import MultitaskNet
from fer_bench.models import backbones
from fer_bench.models.weights_file import load_state_into, strip_prefixes

TRUNK_STAGES = ("conv1", "conv2_dw", "conv_23", "conv_3", "conv_34", "conv_4", "conv_45", "conv_5", "conv_6_sep")
UNUSED = re.compile(r"^bn\.|\.conv_dw\.(bn|prelu)\.|^cat_head\d+\.CoordAtt\.Linear\.")
RULES: tuple[tuple[str, object], ...] = (
    (r"^features\.(\d+)\.", lambda m: f"backbone.trunk.{TRUNK_STAGES[int(m[1])]}."),
    (r"^cat_head(\d+)\.CoordAtt\.", r"backbone.heads.\1."),
    (r"^Linear\.", "backbone.gdc."),
    (r"^fc\.", "head."),
    (r"\.model\.", "."),  # Mix_Residual's Sequential
    (r"\.mixed_depthwise_conv\.", ".convs."),
    (r"\.CA\.", ".attention."),
    (r"\.Linear_([hw])\.", r".linear_\1."),
    # Conv_block / Linear_block attributes → fer-bench's ConvBlock Sequential (conv, BN, PReLU)
    (r"\.conv\.weight$", ".layers.0.weight"),
    (r"\.bn\.(\w+)$", r".layers.1.\1"),
    (r"\.prelu\.weight$", ".layers.2.weight"),
)


def official_key(key: str) -> str | None:
    """The fer-bench ``MultitaskNet`` key of an official DDAMNet key, or None for a module the official forward
    never uses."""
    if UNUSED.search(key):
        return None
    for pattern, replacement in RULES:
        key = re.sub(pattern, replacement, key)
    return key


def map_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An official DDAMNet state_dict (``module.`` prefixes allowed) in fer-bench's key layout."""
    mapped: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = official_key(strip_prefixes(key, ("module.",)))
        if new is None:
            continue
        if new in mapped:
            raise ValueError(f"two checkpoint keys map onto {new!r} (second: {key!r})")
        mapped[new] = value
    return mapped


def load_ddamnet_state(path: str | Path, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of a DDAMNet checkpoint: a state_dict, the official training script's
    ``{'model_state_dict': ...}``, or (only with ``trust_pickle``) a whole pickled model."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a pickled module or other Python objects
        if not trust_pickle:
            raise ValueError(f"{path} is not a plain state_dict ({type(e).__name__}); if it is a whole pickled model "
                             "from a source you trust, add --trust-pickle") from None
        return convert.load_pickled_state(path)
    if isinstance(obj, dict) and isinstance(obj.get("model_state_dict"), dict):
        obj = obj["model_state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} holds no DDAMNet state_dict (expected tensors or {{'model_state_dict': ...}})")
    return obj


def convert_ddamnet(src: str | Path, out: str | Path, trust_pickle: bool = False) -> MultitaskNet:
    """Build fer-bench's ``ddamfn`` MultitaskNet from an official checkpoint (its ``fc`` rows = classes + V + A),
    load it strictly, save ``out`` (a plain state_dict for ``method.weights``) and return the network."""
    state = map_state_dict(load_ddamnet_state(src, trust_pickle))
    if "head.weight" not in state:
        raise ValueError(f"{src}: no classifier 'fc.weight'; not a DDAMNet checkpoint")
    outputs = state["head.weight"].shape[0]
    if outputs - 2 < 2:
        raise ValueError(f"{src}: fc has {outputs} outputs; a multitask network needs classes + valence + arousal")
    heads = len({k.split(".")[2] for k in state if k.startswith("backbone.heads.")})
    backbone, info = backbones.create("ddamfn", heads=heads)
    net = MultitaskNet(backbone, info.num_features, outputs - 2)
    load_state_into(net, state, src, what=f"DDAMNet(num_head={heads})")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), out)
    return net
