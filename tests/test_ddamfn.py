"""DDAMFN backbone and the DDAMNet checkpoint converter.

The reference network below has the key names, shapes and forward of the official ``DDAMNet(num_class=10,
num_head=2)`` (SainingZhang/DDAMFN ``networks/DDAM.py``, ``networks/MixedFeatureNet.py``), written from those files'
structure for this test: ``features`` = MixedFeatureNet children conv1 … conv_6_sep, residual stages in ``.model``,
``MDConv`` with an unused ``bn``/``prelu``, heads ``cat_head<k>.CoordAtt`` with an unused ``Linear``, and an unused
BatchNorm1d ``bn`` after ``fc``. The converted fer-bench network must give the same outputs.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fer_bench import cli
from fer_bench.config import build_config
from fer_bench.engine import runner
from fer_bench.methods.multitask import ddamfn_convert
from fer_bench.methods.multitask.net import build_multitask_net


def hswish(x):
    return x * F.relu6(x + 3) / 6


class ConvBN(nn.Module):
    """Official ``Conv_block`` (``act=True``: conv, bn, prelu) or ``Linear_block`` (conv, bn)."""

    def __init__(self, i, o, k=(1, 1), s=(1, 1), p=(0, 0), g=1, act=True):
        super().__init__()
        self.conv = nn.Conv2d(i, o, k, s, p, groups=g, bias=False)
        self.bn = nn.BatchNorm2d(o)
        if act:
            self.prelu = nn.PReLU(o)

    def forward(self, x):
        x = self.bn(self.conv(x))
        return self.prelu(x) if hasattr(self, "prelu") else x


class MDConv(nn.Module):
    def __init__(self, channels, kernels, splits, stride):
        super().__init__()
        self.splits = splits
        self.mixed_depthwise_conv = nn.ModuleList(nn.Conv2d(c, c, k, stride, k // 2, groups=c, bias=False)
                                                  for k, c in zip(kernels, splits, strict=True))
        self.bn, self.prelu = nn.BatchNorm2d(channels), nn.PReLU(channels)  # built, never called

    def forward(self, x):
        return torch.cat([c(t) for c, t in zip(self.mixed_depthwise_conv, torch.split(x, self.splits, 1),
                                                strict=True)], 1)


class CoordAtt(nn.Module):
    """MFN's CoordAtt (``learned=False``: average pooling, returns x·a_w·a_h) or the DDA head's (``learned=True``:
    depthwise 1×7 / 7×1 Linear_blocks, unused ``Linear``, returns a_w·a_h)."""

    def __init__(self, c, learned=False):
        super().__init__()
        mip = max(8, c // 32)
        self.learned = learned
        if learned:
            self.Linear_h = ConvBN(c, c, (1, 7), g=c, act=False)
            self.Linear_w = ConvBN(c, c, (7, 1), g=c, act=False)
        self.conv1, self.bn1 = nn.Conv2d(c, mip, 1), nn.BatchNorm2d(mip)
        self.conv2, self.conv3 = nn.Conv2d(mip, c, 1), nn.Conv2d(mip, c, 1)
        if learned:
            self.Linear = ConvBN(c, c, (7, 7), g=c, act=False)  # built, never called

    def forward(self, x):
        n, c, h, w = x.size()
        if self.learned:
            x_h, x_w = self.Linear_h(x), self.Linear_w(x).permute(0, 1, 3, 2)
        else:
            x_h, x_w = F.adaptive_avg_pool2d(x, (h, 1)), F.adaptive_avg_pool2d(x, (1, w)).permute(0, 1, 3, 2)
        y = hswish(self.bn1(self.conv1(torch.cat([x_h, x_w], dim=2))))
        x_h, x_w = torch.split(y, [h, w], dim=2)
        a_h = self.conv2(x_h).sigmoid().expand(-1, -1, h, w)
        a_w = self.conv3(x_w.permute(0, 1, 3, 2)).sigmoid().expand(-1, -1, h, w)
        return a_w * a_h if self.learned else x * a_w * a_h


class MixDepthWise(nn.Module):
    def __init__(self, i, o, groups, kernels, splits, stride=(1, 1), residual=False):
        super().__init__()
        self.conv = ConvBN(i, groups)
        self.conv_dw = MDConv(groups, kernels, splits, stride)
        self.CA = CoordAtt(groups)
        self.project = ConvBN(groups, o, act=False)
        self.residual = residual

    def forward(self, x):
        y = self.project(self.CA(self.conv_dw(self.conv(x))))
        return x + y if self.residual else y


class MixResidual(nn.Module):
    def __init__(self, c, n, groups, kernels, splits):
        super().__init__()
        self.model = nn.Sequential(*[MixDepthWise(c, c, groups, kernels, splits, residual=True) for _ in range(n)])

    def forward(self, x):
        return self.model(x)


class CatHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.CoordAtt = CoordAtt(512, learned=True)

    def forward(self, x):
        return self.CoordAtt(x)


class OfficialDDAMNet(nn.Module):
    def __init__(self, num_class=10, num_head=2):
        super().__init__()
        self.features = nn.Sequential(
            ConvBN(3, 64, (3, 3), (2, 2), (1, 1)), ConvBN(64, 64, (3, 3), (1, 1), (1, 1), g=64),
            MixDepthWise(64, 64, 128, (3, 5, 7), [64, 32, 32], (2, 2)), MixResidual(64, 9, 128, (3, 5), [96, 32]),
            MixDepthWise(64, 128, 256, (3, 5, 7), [128, 64, 64], (2, 2)),
            MixResidual(128, 16, 256, (3, 5), [192, 64]),
            MixDepthWise(128, 256, 1024, (3, 5, 7, 9), [256] * 4, (2, 2)),
            MixResidual(256, 6, 512, (3, 5, 7), [172, 170, 170]), ConvBN(256, 512))
        self.num_head = num_head
        for i in range(num_head):
            setattr(self, f"cat_head{i}", CatHead())
        self.Linear = ConvBN(512, 512, (7, 7), g=512, act=False)
        self.fc = nn.Linear(512, num_class)
        self.bn = nn.BatchNorm1d(num_class)  # built, never called

    def forward(self, x):
        x = self.features(x)
        heads = [getattr(self, f"cat_head{i}")(x) for i in range(self.num_head)]
        y = heads[0]
        for h in heads[1:]:
            y = torch.max(y, h)
        return self.fc(self.Linear(x * y).flatten(1)), x, heads


def _randomised(model: nn.Module) -> nn.Module:
    """Random BatchNorm affine parameters and PReLU slopes, then BatchNorm running statistics from one
    training-mode pass over random images (so activations neither vanish nor explode); eval mode."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0, 0.1, generator=g)
                m.momentum = 1.0
            elif isinstance(m, nn.PReLU):
                m.weight.uniform_(0.0, 0.5, generator=g)
        model.train()(torch.randn(2, 3, 112, 112, generator=g))
    return model.eval()


@pytest.fixture(scope="module")
def official():
    torch.manual_seed(0)
    return _randomised(OfficialDDAMNet(num_class=10, num_head=2))


def test_official_checkpoint_converts_and_gives_the_same_outputs(official, tmp_path):
    src, out = tmp_path / "affectnet8_epoch9_acc0.642_mtl_2.pth", tmp_path / "ddamfn.pt"
    torch.save({"iter": 9, "model_state_dict": official.state_dict()}, src)  # the official training script's format
    assert cli.main(["convert", f"src={src}", "backbone=ddamfn", f"out={out}"]) == 0
    net, info = build_multitask_net("ddamfn", num_classes=8, weights=str(out))  # strict load of the saved file
    assert info.image_size == 112 and info.mean == (0.485, 0.456, 0.406)
    net.eval()
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        want, got = official(x)[0], net(x)
    assert (want[0] - want[1]).abs().max() > 0.1  # the outputs depend on the input
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    unused = {k for k in official.state_dict() if ddamfn_convert.official_key(k) is None}
    assert unused == {k for k in official.state_dict()
                      if k.startswith("bn.") or ".conv_dw.bn." in k or ".conv_dw.prelu." in k
                      or ".CoordAtt.Linear." in k}
    used = sum(v.numel() for k, v in official.named_parameters() if k not in unused)
    assert sum(p.numel() for p in net.parameters()) == used


def test_converter_names_a_missing_key_and_refuses_pickles_by_default(official, tmp_path):
    state = dict(official.state_dict())
    del state["features.3.model.0.CA.conv1.weight"]
    src = tmp_path / "broken.pth"
    torch.save(state, src)
    with pytest.raises(ValueError, match=r"missing: backbone\.trunk\.conv_3\.0\.attention\.conv1\.weight"):
        ddamfn_convert.convert_ddamnet(src, tmp_path / "out.pt")
    pickled = tmp_path / "whole.pth"
    torch.save(nn.Linear(2, 3), pickled)
    with pytest.raises(ValueError, match="--trust-pickle"):
        ddamfn_convert.convert_ddamnet(pickled, tmp_path / "out.pt")


@pytest.mark.slow
def test_multitask_trains_a_ddamfn_backbone_on_synthetic_faces(tmp_path):
    cfg = build_config(["method=multitask", "profile=cpu", "backbone.name=ddamfn_tiny", "data.image_size=32",
                        "data.synth.subjects=20", "data.synth.per_subject=2", "data.synth.size=64",
                        "data.synth.difficulty=easy", "data.num_workers=0", "data.batch_size=16",
                        "method.head_epochs=0", "method.au_head.epochs=5", "trainer.max_epochs=4",
                        "trainer.progress_bar=false", "logger.wandb=false",
                        f"runs_dir={tmp_path / 'runs'}", f"results_dir={tmp_path / 'results'}"])
    run_dir = runner.train_one(cfg)
    best = json.loads((run_dir / "metrics.json").read_text())["best"]
    assert best["test/acc"] > 1 / 8 + 0.2, best  # 8 classes
    assert best["test/ccc_v"] > 0.2 and best["test/ccc_a"] > 0.2, best
