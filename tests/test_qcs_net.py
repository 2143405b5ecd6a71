"""QCSNet: shapes, inference path, loss, gradients, parameter/MAC counts, IR-50 loading (birdwcp/QCS)."""

import pytest
import torch
from torch import nn

from fer_bench.methods.qcs.csa import CrossSimilarityAttention
from fer_bench.methods.qcs.net import QCSNet, build_qcs_net, inference_parameter_count, qcs_loss
from fer_bench.models.backbones import TimmTrunk
from fer_bench.models.ir50 import IR50Trunk, load_ir50_weights
from fer_bench.models.vit import Attention

K = 5


def tiny_net(**kwargs) -> QCSNet:
    torch.manual_seed(0)
    return QCSNet(IR50Trunk(units=(1, 1, 1)), K, dim=32, heads=4, image_size=64, **kwargs)


def images(batch=2, branches=4, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 3, size, size, generator=g) for _ in range(branches)]


def count_calls(modules):
    counter = {"calls": 0}
    handles = [
        m.register_forward_hook(lambda *_: counter.__setitem__("calls", counter["calls"] + 1))
        for m in modules
    ]
    return counter, handles


def test_inference_path_never_runs_cross_modules_and_matches_anchor_logits():
    net = tiny_net().eval()
    counter, handles = count_calls([*net.csa, net.vit_cross, net.head_cross])
    a, p, n, n2 = images()
    with torch.no_grad():
        logits = net(a)
        assert counter["calls"] == 0
        base, cross = net.forward_quadruplet(a, p, n, n2)
    assert counter["calls"] > 0
    for h in handles:
        h.remove()
    assert logits.shape == (2, K) and len(base) == len(cross) == 4
    assert all(t.shape == (2, K) for t in base + cross)
    torch.testing.assert_close(logits, base[0])


def test_qcs_loss_is_mean_of_eight_cross_entropies():
    g = torch.Generator().manual_seed(0)
    base = [torch.randn(3, K, generator=g) for _ in range(4)]
    cross = [torch.randn(3, K, generator=g) for _ in range(4)]
    y, y_n = torch.tensor([0, 1, 2]), torch.tensor([3, 4, 0])

    def ce(logits, t):
        return -(logits - logits.exp().sum(1, keepdim=True).log()).gather(1, t[:, None]).mean()

    targets = [y, y, y_n, y_n]
    terms = [ce(lg, t) for lg, t in zip(base + cross, targets + targets, strict=True)]
    total, base_part, cross_part = qcs_loss(base, cross, y, y_n)
    torch.testing.assert_close(total, sum(terms) / 8)
    torch.testing.assert_close(base_part, sum(terms[:4]) / 4)
    torch.testing.assert_close(cross_part, sum(terms[4:]) / 4)
    wrong = qcs_loss(base, cross, y, y)[0]  # negatives scored against y would differ
    assert not torch.isclose(wrong, total)


def test_cross_loss_reaches_qk_projection_theta_and_base_path():
    net = tiny_net().train()
    base, cross = net.forward_quadruplet(*images())
    _, _, cross_loss = qcs_loss(base, cross, torch.tensor([0, 1]), torch.tensor([2, 3]))
    cross_loss.backward()
    for csa in net.csa:
        assert csa.proj.weight.grad[:32].abs().sum() > 0  # QK half: only through the distance matrices
        assert csa.theta.grad.abs() > 0
    for module in (net.vit_base, net.tokens, net.trunk):
        assert sum(p.grad.abs().sum() for p in module.parameters() if p.grad is not None) > 0
    assert all(
        p.grad is None for p in net.head_base.parameters()
    )  # the cross loss never touches the base head


def test_dcs_two_branches():
    net = tiny_net(branches=2, csa_variant="s")
    base, cross = net.forward_quadruplet(*images(branches=2))
    assert len(base) == len(cross) == 2
    total, _, _ = qcs_loss(base, cross, torch.tensor([0, 1]))
    total.backward()
    with pytest.raises(ValueError, match="2 branches"):
        net.forward_quadruplet(*images())


@pytest.mark.parametrize(("out_indices", "reductions"), [((1, 2, 3), (4, 8, 16)), ((0, 2, 3), (2, 8, 16))])
def test_timm_trunk_scales_land_on_one_grid(out_indices, reductions):
    trunk = TimmTrunk("resnet10t", out_indices=out_indices)
    assert trunk.reductions == reductions
    net = QCSNet(trunk, K, dim=32, heads=4, image_size=64)
    assert net.tokens.grid == 2
    base, cross = net.forward_quadruplet(*images())
    assert base[0].shape == cross[3].shape == (2, K)
    with pytest.raises(ValueError, match="multiple of 32"):
        QCSNet(trunk, K, dim=32, heads=4, image_size=48)


def count_macs(net: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of Conv2d, Linear and attention matmuls (QKᵀ and AV) in one forward."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total += output.numel() * k
        elif isinstance(module, nn.Linear):
            total += output.numel() * module.in_features
        else:
            B, N, C = inputs[0].shape
            total += 2 * B * N * N * C

    handles = [
        m.register_forward_hook(hook)
        for m in net.modules()
        if isinstance(m, nn.Conv2d | nn.Linear | Attention)
    ]
    with torch.no_grad():
        net(x)
    for h in handles:
        h.remove()
    return total


def test_full_size_network():
    """The real configuration, built once: shapes, parameter counts (the released model class) and MACs."""
    torch.manual_seed(0)
    net = build_qcs_net(7).eval()
    assert abs(inference_parameter_count(net) / 1e6 - 40.70) < 0.01
    for csa in net.csa:
        assert abs(sum(p.numel() for p in csa.parameters()) / 1e6 - 5.91) < 0.005
    seen = {}
    net.trunk.input_layer.register_forward_pre_hook(lambda m, inp: seen.__setitem__("trunk_in", inp[0].shape))
    net.vit_base.register_forward_hook(lambda m, inp, out: seen.update(tokens=inp[0].shape, cls=out[0].shape))
    x = torch.randn(1, 3, 224, 224)
    macs = count_macs(net, x)
    assert seen == {"trunk_in": (1, 3, 112, 112), "tokens": (1, 147, 768), "cls": (1, 768)}
    assert net.tokens.tokens_per_scale == 49
    assert 8.0e9 < macs < 8.2e9, macs


def _save(state, path):
    torch.save(state, path)
    return path


def test_ir50_loader_strips_prefixes_and_ignores_unused(tmp_path):
    torch.manual_seed(0)
    source, target = IR50Trunk(units=(1, 1, 2)), IR50Trunk(units=(1, 1, 2))
    state = {f"module.ir_back.{k}": v for k, v in source.state_dict().items()}
    state["module.ir_back.output_layer.3.weight"] = torch.zeros(512, 25088)
    state["module.VIT_base.cls_token"] = torch.zeros(1, 1, 768)
    loaded = load_ir50_weights(target, _save(state, tmp_path / "ir.pth"))
    assert "body3.1.res_layer.1.weight" in loaded
    for k, v in source.state_dict().items():
        torch.testing.assert_close(target.state_dict()[k], v)


def test_ir50_loader_maps_flat_insightface_layout(tmp_path):
    source, target = IR50Trunk(units=(1, 1, 2)), IR50Trunk(units=(1, 1, 2))
    flat = {"body1.0": "body.0", "body2.0": "body.1", "body3.0": "body.2", "body3.1": "body.3"}
    state = {}
    for k, v in source.state_dict().items():
        head = ".".join(k.split(".")[:2])
        state[k.replace(head, flat[head], 1) if head in flat else k] = v
    state["body.4.res_layer.0.weight"] = torch.zeros(512)  # stage 4: ignored
    load_ir50_weights(target, _save(state, tmp_path / "flat.pth"))
    torch.testing.assert_close(target.body3[1].res_layer[1].weight, source.body3[1].res_layer[1].weight)


def test_ir50_loader_fails_loudly(tmp_path):
    trunk = IR50Trunk(units=(1, 1, 1))
    state = dict(trunk.state_dict())
    del state["body2.0.shortcut_layer.0.weight"]
    path = _save({"state_dict": state}, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match=r"broken\.pth.*body2\.0\.shortcut_layer\.0\.weight"):
        load_ir50_weights(trunk, path)
    state = dict(trunk.state_dict())
    state["input_layer.0.weight"] = torch.zeros(64, 3, 5, 5)
    with pytest.raises(ValueError, match="input_layer.0.weight"):
        load_ir50_weights(trunk, _save(state, tmp_path / "shape.pth"))


def test_csa_is_the_shared_per_scale_module():
    net = tiny_net()
    assert len(net.csa) == 3 and all(isinstance(m, CrossSimilarityAttention) for m in net.csa)
    assert [k.item() for k in net.k_scales()] == [1.0, 1.0, 1.0]
