"""Import of released QCS checkpoints (official code: https://github.com/birdwcp/QCS at commit 293f28f).

The checkpoints are built here in the official key layout, from an enumeration of the official module tree
(``official_layout``) that is checked, at full size, against the key list read off the official class
(``tests/data/qcs_official_keys.txt``). The reference logits come from ``official_base_logits``: the official base
path (``pyramid_trans_expr.forward`` with one input: ``ir_back`` → ``conv1..3`` → ``embed_q/k/v`` → ``VIT_base``)
written with ``torch.nn.functional`` straight on the official names. It shares no module, key mapping or loader with
fer-bench, so a swapped tensor, a wrong head order or a mis-wired layer in the import changes the logits.
"""

from __future__ import annotations

import functools
import pickle
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fer_bench import cli
from fer_bench.config import build_config
from fer_bench.engine import runner
from fer_bench.methods.qcs import checkpoint_import as qcs_import
from fer_bench.methods.qcs.net import QCSNet
from fer_bench.models.ir50 import IR50Trunk, load_ir50_weights

KEY_LIST = Path(__file__).parent / "data" / "qcs_official_keys.txt"
FULL_UNITS = (3, 4, 14)
DIM, IMAGE = 16, 64  # tiny width (8 heads of 2) and input: 2×2 tokens per scale
TINY = {"dim": DIM, "tokens": 12, "units": (2, 2, 1)}  # two units where a stage has them: both shortcut kinds
# fer-bench's basic7 order (neutral, happy, sad, surprise, fear, disgust, anger) read from the RAF-DB head order
# (surprise, fear, disgust, happy, sad, anger, neutral) of main_QCS_raf_db.py
RAF_TO_BASIC7 = [6, 3, 4, 0, 1, 2, 5]


# --- the official layout ---------------------------------------------------------------------------------------
def _bn(p: str, c: int) -> dict:
    return {f"{p}.weight": (c,), f"{p}.bias": (c,), f"{p}.running_mean": (c,), f"{p}.running_var": (c,),
            f"{p}.num_batches_tracked": ()}


def _affine(p: str, out: int, inp: int | None = None) -> dict:
    return {f"{p}.weight": (out,) if inp is None else (out, inp), f"{p}.bias": (out,)}


def _vit(p: str, dim: int, depth: int, tokens: int, classes: int) -> dict:
    """vit_model_7cls.VisionTransformer; patch_embed, CON1, IRLinear1/2 have hard-coded widths (dead modules)."""
    s = {f"{p}.cls_token": (1, 1, dim), f"{p}.pos_embed": (1, tokens + 1, dim),
         **_affine(f"{p}.se_block.linear1", dim, dim), **_affine(f"{p}.se_block.linear2", dim, dim),
         f"{p}.patch_embed.proj.weight": (768, 256, 1, 1), f"{p}.patch_embed.proj.bias": (768,),
         **_affine(f"{p}.head.linear", classes, dim), f"{p}.eca_block.conv.weight": (1, 1, 5),
         f"{p}.CON1.weight": (768, 256, 1, 1), **_affine(f"{p}.IRLinear1", 768, 1024),
         **_affine(f"{p}.IRLinear2", 512, 768)}
    for i in range(depth):
        b = f"{p}.blocks.{i}"
        s |= {**_affine(f"{b}.norm1", dim), f"{b}.conv.weight": (tokens + 1, tokens + 1, 1),
              f"{b}.conv.bias": (tokens + 1,), **_affine(f"{b}.attn.qkv", 3 * dim, dim),
              **_affine(f"{b}.attn.proj", dim, dim), **_affine(f"{b}.norm2", dim),
              **_affine(f"{b}.mlp.fc1", 4 * dim, dim), **_affine(f"{b}.mlp.fc2", dim, 4 * dim)}
    return s | _affine(f"{p}.norm", dim)


def _ir50(units) -> dict:
    """ir50.Backbone(50, 0.0, 'ir'): input_layer, output_layer (unused), body1..3 of bottleneck_IR units."""
    s = {"ir_back.input_layer.0.weight": (64, 3, 3, 3), **_bn("ir_back.input_layer.1", 64),
         "ir_back.input_layer.2.weight": (64,), **_bn("ir_back.output_layer.0", 512),
         **_affine("ir_back.output_layer.3", 512, 512 * 7 * 7), **_bn("ir_back.output_layer.4", 512)}
    for stage, (cin, depth, n) in enumerate(zip((64, 64, 128), (64, 128, 256), units, strict=True), start=1):
        for u in range(n):
            p, c = f"ir_back.body{stage}.{u}", cin if u == 0 else depth
            if c != depth:
                s |= {f"{p}.shortcut_layer.0.weight": (depth, c, 1, 1), **_bn(f"{p}.shortcut_layer.1", depth)}
            s |= {**_bn(f"{p}.res_layer.0", c), f"{p}.res_layer.1.weight": (depth, c, 3, 3),
                  f"{p}.res_layer.2.weight": (depth,), f"{p}.res_layer.3.weight": (depth, depth, 3, 3),
                  **_bn(f"{p}.res_layer.4", depth)}
    return s


def official_layout(dim=768, classes=7, units=FULL_UNITS, tokens=147, theta=True, embed=("q", "k", "v")) -> dict:
    """Key → shape of models/QCS_7cls_raf_db.py's pyramid_trans_expr (state_dict order); DCS: theta=False."""
    q, k, v = (f"embed_{e}" for e in embed)
    s = {**_vit("VIT_base", dim, 2, tokens, classes), **_vit("VIT_cross", dim, 1, tokens, classes), **_ir50(units)}
    for i, c in enumerate((64, 128, 256), start=1):
        s |= {f"conv{i}.weight": (c, c, 3, 3), f"conv{i}.bias": (c,)}
    s |= {f"{q}.0.weight": (dim, 64, 3, 3), f"{q}.0.bias": (dim,), f"{q}.1.weight": (dim, dim, 3, 3),
          f"{q}.1.bias": (dim,), f"{k}.0.weight": (dim, 128, 3, 3), f"{k}.0.bias": (dim,),
          f"{v}.proj.weight": (dim, 256, 1, 1), f"{v}.proj.bias": (dim,)}
    for i in (1, 2, 3):
        p = f"cross_attention_{i}"
        s |= ({f"{p}.theta": ()} if theta else {}) | {
            **_affine(f"{p}.norm1", dim), **_affine(f"{p}.norm2", dim), **_affine(f"{p}.proj", 2 * dim, dim),
            **_affine(f"{p}.mlp.fc1", 4 * dim, dim), **_affine(f"{p}.mlp.fc2", dim, 4 * dim)}
    return s


def released_key_list() -> dict[str, tuple[int, ...]]:
    rows = [line.rstrip("\n").split("\t") for line in KEY_LIST.read_text().splitlines() if not line.startswith("#")]
    return {k: tuple(int(x) for x in shape.split(",")) if shape else () for k, shape in rows}


def random_official_state(seed=0, **layout) -> dict[str, torch.Tensor]:
    """A fresh dict of :func:`_random_state`'s tensors (built once per layout; tests may add keys)."""
    return dict(_random_state(seed, tuple(sorted(layout.items()))))


@functools.cache
def _random_state(seed: int, layout: tuple) -> dict[str, torch.Tensor]:
    """Random tensors in the official layout, float32 values held in float64 (the released files are float32, and
    fer-bench's network keeps float32 parameters): weights scaled by fan-in, BN statistics and norms away from
    identity, so that every tensor moves the logits."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in official_layout(**dict(layout)).items():
        if qcs_import.fer_key(key) is None:  # a dead module: a zero-strided zero (no memory, nothing to read)
            state[key] = torch.zeros((), dtype=torch.float64).expand(shape)
        elif key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = 0.5 + torch.rand(shape, generator=g, dtype=torch.float64)
        elif len(shape) >= 2 and "token" not in key and "pos_embed" not in key:
            fan_in = torch.Size(shape[1:]).numel()
            state[key] = torch.randn(shape, generator=g, dtype=torch.float64) / fan_in**0.5
        elif key.endswith(("norm1.weight", "norm2.weight", "norm.weight")) or ".weight" in key and len(shape) == 1:
            state[key] = 1 + 0.2 * torch.randn(shape, generator=g, dtype=torch.float64)
        else:
            state[key] = 0.2 * torch.randn(shape, generator=g, dtype=torch.float64)
        if state[key].is_floating_point():
            state[key] = state[key].float().double()
    return state


# --- the official base path, functional -----------------------------------------------------------------------
def _official_vit(sd: dict, p: str, tokens: torch.Tensor) -> torch.Tensor:
    """VIT_*.forward: cls + pos, pre-norm blocks (LayerNorm eps 1e-6, 8 heads), final norm, SE gate, head."""
    B, _, C = tokens.shape
    ln = lambda x, n: F.layer_norm(x, (C,), sd[f"{n}.weight"], sd[f"{n}.bias"], eps=1e-6)  # noqa: E731
    lin = lambda x, n: F.linear(x, sd[f"{n}.weight"], sd[f"{n}.bias"])  # noqa: E731
    x = torch.cat([sd[f"{p}.cls_token"].expand(B, -1, -1), tokens], dim=1) + sd[f"{p}.pos_embed"]
    depth = len({k.split(".")[2] for k in sd if k.startswith(f"{p}.blocks.")})
    for i in range(depth):
        b = f"{p}.blocks.{i}"
        N = x.shape[1]
        q, k, v = lin(ln(x, f"{b}.norm1"), f"{b}.attn.qkv").reshape(B, N, 3, 8, C // 8).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * (C // 8) ** -0.5).softmax(dim=-1)
        x = x + lin((attn @ v).transpose(1, 2).reshape(B, N, C), f"{b}.attn.proj")
        x = x + lin(F.gelu(lin(ln(x, f"{b}.norm2"), f"{b}.mlp.fc1")), f"{b}.mlp.fc2")
    cls = ln(x, f"{p}.norm")[:, 0]
    gate = torch.sigmoid(lin(F.relu(lin(cls, f"{p}.se_block.linear1")), f"{p}.se_block.linear2"))
    return lin(cls * gate, f"{p}.head.linear")


def _official_trunk(sd: dict, x: torch.Tensor) -> list[torch.Tensor]:
    """ir50.Backbone.forward: nearest resize (the official size=112 is half its 224 input), stem, body1..3."""
    bn = lambda x, n: F.batch_norm(x, sd[f"{n}.running_mean"], sd[f"{n}.running_var"], sd[f"{n}.weight"],  # noqa: E731
                                   sd[f"{n}.bias"], training=False, eps=1e-5)
    x = F.interpolate(x, size=x.shape[-1] // 2)
    x = F.prelu(bn(F.conv2d(x, sd["ir_back.input_layer.0.weight"], padding=1), "ir_back.input_layer.1"),
                sd["ir_back.input_layer.2.weight"])
    feats = []
    for stage in (1, 2, 3):
        units = len({k.split(".")[2] for k in sd if k.startswith(f"ir_back.body{stage}.")})
        for u in range(units):
            p, stride = f"ir_back.body{stage}.{u}", 2 if u == 0 else 1
            if f"{p}.shortcut_layer.0.weight" in sd:
                shortcut = bn(F.conv2d(x, sd[f"{p}.shortcut_layer.0.weight"], stride=stride), f"{p}.shortcut_layer.1")
            else:
                shortcut = F.max_pool2d(x, 1, stride)
            r = F.conv2d(bn(x, f"{p}.res_layer.0"), sd[f"{p}.res_layer.1.weight"], padding=1)
            r = F.conv2d(F.prelu(r, sd[f"{p}.res_layer.2.weight"]), sd[f"{p}.res_layer.3.weight"], stride=stride,
                         padding=1)
            x = bn(r, f"{p}.res_layer.4") + shortcut
        feats.append(x)
    return feats


def official_base_logits(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """pyramid_trans_expr.forward(x_a, None): the base branch in the official head order."""
    conv = lambda x, n, **kw: F.conv2d(x, sd[f"{n}.weight"], sd[f"{n}.bias"], **kw)  # noqa: E731
    f1, f2, f3 = (conv(f, f"conv{i}", stride=2, padding=1) for i, f in enumerate(_official_trunk(sd, x), start=1))
    o1 = conv(conv(f1, "embed_q.0", stride=2, padding=1), "embed_q.1", stride=2, padding=1)
    o2 = conv(f2, "embed_k.0", stride=2, padding=1)
    o3 = conv(f3, "embed_v.proj")
    tokens = torch.cat([o.flatten(2).transpose(1, 2) for o in (o1, o2, o3)], dim=1)
    return _official_vit(sd, "VIT_base", tokens)


# --- checkpoint files as the official code writes them ---------------------------------------------------------
class RecorderMeter:
    """Stands for the official recorder objects pickled into every checkpoint (a class the converter cannot import)."""

    def __init__(self):
        self.epoch_losses = [[1.5, 1.2], [1.1, 0.9]]


def write_training_checkpoint(state: dict, path: Path) -> None:
    """main_QCS_*.py's save_checkpoint: the nn.DataParallel state_dict plus optimizer state and recorders."""
    torch.save({"epoch": 12, "state_dict": {f"module.{k}": v for k, v in state.items()}, "best_acc": torch.tensor(92.5),
                "optimizer": {"state": {}, "param_groups": [{"lr": 3e-6}]}, "recorder_m": RecorderMeter(),
                "recorder": RecorderMeter()}, path)


class pyramid_trans_expr(nn.Module):  # noqa: N801 - the official class name, pickled by name
    """A module tree whose state_dict carries exactly the given official keys (parameters and buffers)."""

    def __init__(self, state: dict):
        super().__init__()
        for key, value in state.items():
            *path, leaf = key.split(".")
            owner = self
            for part in path:
                if not hasattr(owner, part):
                    owner.add_module(part, nn.Module())
                owner = getattr(owner, part)
            if "running_" in leaf or leaf == "num_batches_tracked":
                owner.register_buffer(leaf, value)
            else:
                owner.register_parameter(leaf, nn.Parameter(value, requires_grad=False))


# --- tests -----------------------------------------------------------------------------------------------------
def test_layout_enumeration_equals_the_released_key_list():
    """The enumeration the tiny checkpoints are built from is the official one, key for key and shape for shape."""
    released = released_key_list()
    assert list(official_layout()) == list(released)
    assert official_layout() == released


def test_every_released_key_maps_onto_the_full_size_network_or_is_a_known_dead_module():
    released = released_key_list()
    with torch.device("meta"):
        net = QCSNet(IR50Trunk(), 7)
    own = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    names = {k: qcs_import.fer_key(k) for k in released}
    mapped = {names[k]: shape for k, shape in released.items() if names[k] is not None}
    dead = [k for k in released if names[k] is None]
    assert len(mapped) == len(released) - len(dead)  # no two official tensors land on one fer-bench tensor
    assert mapped == own  # every fer-bench tensor filled, with the official shape
    assert {k.split(".")[1] for k in dead} == {
        "output_layer", "patch_embed", "eca_block", "CON1", "IRLinear1", "IRLinear2", "blocks"}
    dead_params = sum(torch.Size(released[k]).numel() for k in dead if "num_batches" not in k)
    assert round(dead_params / 1e6, 1) == 16.1  # specs: ≈ 16.1 M registered but never used
    assert qcs_import.fer_key("module.embed_1.1.weight") == "tokens.embed.0.1.weight"  # newer layer names
    assert qcs_import.fer_key("fusion.classifier.weight") is None  # DCS_8cls_affectnet.py
    with pytest.raises(KeyError):
        qcs_import.fer_key("module.landmark_net.conv.weight")


@functools.cache
def _expected_logits() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(2, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return x, official_base_logits(random_official_state(**TINY), x)[:, RAF_TO_BASIC7]


def expected_logits(x: torch.Tensor) -> torch.Tensor:
    """The official base logits of the default tiny state on the shared input, in fer-bench's class order."""
    shared, logits = _expected_logits()
    assert torch.equal(x, shared)
    return logits


@pytest.mark.parametrize("layout", ["training_checkpoint", "whole_model", "state_dict"])
def test_converted_base_logits_equal_the_official_forward(tmp_path, layout):
    official = random_official_state(**TINY)
    src, out = tmp_path / "QCS_raf-db.pth", tmp_path / "qcs_rafdb.pt"
    if layout == "training_checkpoint":
        write_training_checkpoint(official, src)
    elif layout == "whole_model":
        torch.save(nn.DataParallel(pyramid_trans_expr(official)), src)
    else:
        torch.save(official, src)
    done = qcs_import.convert_checkpoint(src, out, "rafdb", trust_pickle=layout != "state_dict")
    assert (done.arch.dim, done.arch.units, done.arch.image_size, done.arch.branches) == (DIM, TINY["units"], IMAGE, 4)
    assert done.space == "basic7" and len(done.dropped) == 34
    x = torch.randn(2, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = expected_logits(x)
    net = done.net.double().eval()
    with torch.no_grad():
        assert torch.allclose(net(x), expected, rtol=0, atol=1e-10)
    assert set(torch.load(out, weights_only=True)) == set(net.state_dict())  # a plain state_dict


def test_cross_branch_tensors_land_on_the_cross_modules(tmp_path):
    official = random_official_state(seed=3, **TINY)
    net = qcs_import.import_state(official, "rafdb").net.double().eval()
    own = net.state_dict()
    pairs = {"cross_attention_1.theta": "csa.0.theta", "cross_attention_3.theta": "csa.2.theta",
             "cross_attention_2.proj.weight": "csa.1.proj.weight", "cross_attention_2.norm1.bias": "csa.1.norm1.bias",
             "cross_attention_3.norm2.weight": "csa.2.norm2.weight",
             "cross_attention_1.mlp.fc2.bias": "csa.0.mlp.fc2.bias",
             "VIT_cross.blocks.0.attn.qkv.weight": "vit_cross.blocks.0.attn.qkv.weight",
             "VIT_cross.se_block.linear2.weight": "head_cross.linear2.weight"}
    for official_key, key in pairs.items():
        assert torch.equal(own[key], official[official_key]), key
    # the cross ViT + head on the same tokens: the official VIT_cross forward in the official head order
    tokens = torch.randn(2, 12, DIM, dtype=torch.float64)
    with torch.no_grad():
        cross = net.head_cross(net.vit_cross(tokens)[0])
    assert torch.allclose(cross, _official_vit(official, "VIT_cross", tokens)[:, RAF_TO_BASIC7], rtol=0, atol=1e-10)


def test_dcs_checkpoint_with_the_affectnet8_fusion_head(tmp_path):
    """DCS files: no theta (two branches, similarity-only CSA); DCS_8cls_affectnet.py adds an unused fusion head."""
    official = random_official_state(seed=5, **TINY, classes=8, theta=False, embed=("1", "2", "3"))
    official |= {"fusion.classifier.weight": torch.zeros(8, DIM * DIM), "fusion.classifier.bias": torch.zeros(8)}
    renamed = {k.replace("embed_1", "embed_q").replace("embed_2", "embed_k").replace("embed_3", "embed_v"): v
               for k, v in official.items()}
    done = qcs_import.import_state(official, "affectnet")
    assert (done.arch.branches, done.space, done.net.csa[0].variant) == (2, "basic8", "s")
    with pytest.raises(ValueError, match="labels=rafdb has 7 classes but the checkpoint's heads have 8"):
        qcs_import.import_state(official, "rafdb")
    x = torch.randn(2, 3, IMAGE, IMAGE, dtype=torch.float64)
    with torch.no_grad():  # AffectNet's order is fer-bench's canonical order: no reordering
        assert torch.allclose(done.net.double().eval()(x), official_base_logits(renamed, x), rtol=0, atol=1e-10)


def test_a_pickled_checkpoint_is_refused_without_trust_and_bad_files_are_named(tmp_path, capsys):
    official = random_official_state(**TINY)
    src, out = tmp_path / "QCS_raf-db.pth", tmp_path / "out.pt"
    write_training_checkpoint(official, src)
    with pytest.raises(pickle.UnpicklingError):  # like the released files: not loadable with weights_only
        torch.load(src, weights_only=True)
    assert cli.main(["convert", "format=qcs", f"src={src}", "labels=rafdb", f"out={out}"]) == 2
    assert "--trust-pickle" in capsys.readouterr().err and not out.exists()
    with pytest.warns(UserWarning, match="arbitrary code"):
        assert cli.main(["convert", "format=qcs", f"src={src}", "labels=rafdb", f"out={out}", "--trust-pickle"]) == 0
    printed = capsys.readouterr().out
    assert "method.weights=" in printed and "method.trunk_weights=" in printed and out.is_file()
    stray = tmp_path / "other.pth"
    torch.save({**official, "module.landmark_net.conv.weight": torch.zeros(1)}, stray)
    with pytest.raises(ValueError, match="landmark_net"):
        qcs_import.convert_checkpoint(stray, out, "rafdb")
    with pytest.raises(ValueError, match="labels='raf'"):
        qcs_import.import_state(official, "raf")


@pytest.mark.slow  # the full IR-50 trunk: a run's config has no knob for fewer units
def test_a_converted_checkpoint_runs_as_a_fer_bench_qcs_model(tmp_path):
    """method.weights loads the whole network into a QCS run; method.trunk_weights takes its IR-50 (QCS‡ init)."""
    official = random_official_state(seed=7, dim=DIM, tokens=12)
    src, out = tmp_path / "QCS_raf-db.pth", tmp_path / "qcs.pt"
    torch.save(official, src)
    done = qcs_import.convert_checkpoint(src, out, "rafdb")
    overrides = [f"{k}={v}" for k, v in done.arch.config_overrides().items()]
    cfg = build_config(["method=qcs", *overrides, f"method.weights={out}", "logger.wandb=false"])
    method = runner.build_method(cfg).double().eval()
    x = torch.randn(2, 3, IMAGE, IMAGE, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(method(x), official_base_logits(official, x)[:, RAF_TO_BASIC7], rtol=0, atol=1e-10)
    trunk = IR50Trunk()
    load_ir50_weights(trunk, out)
    with torch.no_grad():
        feats = trunk.double().eval()(x)
    for ours, theirs in zip(feats, _official_trunk(official, x), strict=True):
        assert torch.allclose(ours, theirs, rtol=0, atol=1e-10)
