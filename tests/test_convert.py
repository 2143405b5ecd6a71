"""The opt-in converter of whole pickled HSEmotion-style models: tested on pickles this test writes, whose classes
live in a module that no longer exists when the file is converted (like a model tied to an old timm)."""

import sys
import types

import pytest
import timm
import torch
from torch import nn

from fer_bench import cli
from fer_bench.models import convert, mobilefacenet
from fer_bench.models.multitask_net import build_multitask_net, load_net_weights


def _pickle_with_vanished_classes(model: nn.Module, path, module_name: str) -> None:
    """Save ``model`` whole with its classes renamed into a throwaway module, which is then removed."""
    fake = types.ModuleType(module_name)
    sys.modules[module_name] = fake
    try:
        for m in model.modules():
            cls = type(m)
            if not cls.__module__.startswith("torch"):
                if not hasattr(fake, cls.__name__):
                    setattr(fake, cls.__name__, type(cls.__name__, (cls,), {"__module__": module_name}))
                m.__class__ = getattr(fake, cls.__name__)
        torch.save(model, path)
    finally:
        del sys.modules[module_name]


def test_converts_a_pickled_timm_model_with_a_sequential_classifier(tmp_path):
    torch.manual_seed(0)
    old = timm.create_model("test_efficientnet", num_classes=0)
    old.classifier = nn.Sequential(nn.Linear(old.num_features, 10))  # as in some official files
    old.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = old(x)  # timm applies .classifier in forward_head
    src, out = tmp_path / "enet_mtl.pt", tmp_path / "enet_mtl.state.pt"
    _pickle_with_vanished_classes(old, src, "timm_0_4_5_models_efficientnet")
    with pytest.warns(UserWarning, match="arbitrary code"):
        net = convert.convert(src, "test_efficientnet", out)
    net.eval()
    with torch.no_grad():
        assert torch.allclose(net(x), expected, atol=1e-5)
    state = torch.load(out, weights_only=True)  # a plain state_dict now
    assert set(state) == set(net.state_dict()) and {"head.weight", "head.bias"} <= set(state)
    fresh, _ = build_multitask_net("test_efficientnet", 8)
    load_net_weights(fresh, out)
    fresh.eval()
    with torch.no_grad():
        assert torch.allclose(fresh(x), expected, atol=1e-5)


def test_converts_a_pickled_mobilefacenet_with_fc(tmp_path):
    class MBFWithFC(nn.Module):  # the shape of HSEmotion's mbf_va_mtl.pt: backbone modules + fc
        def __init__(self):
            super().__init__()
            base = mobilefacenet.create("mobilefacenet_tiny", image_size=32)
            self.layers, self.conv_sep, self.features = base.layers, base.conv_sep, base.features
            self.fc = nn.Linear(512, 10)

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return self.fc(self.features(self.conv_sep(x)))

    torch.manual_seed(1)
    old = MBFWithFC().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = old(x)
    src = tmp_path / "mbf_va_mtl.pt"
    _pickle_with_vanished_classes(old, src, "hsemotion_mobilefacenet")
    with pytest.warns(UserWarning):
        net = convert.convert(src, "mobilefacenet_tiny", tmp_path / "mbf.pt", image_size=32)
    with torch.no_grad():
        assert torch.allclose(net.eval()(x), expected, atol=1e-5)
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="does not fit backbone"):
        convert.convert(src, "test_efficientnet", tmp_path / "wrong.pt")


def test_cli_convert_is_opt_in(tmp_path, capsys):
    src = tmp_path / "model.pt"
    torch.save(nn.Linear(3, 10), src)
    args = ["convert", f"src={src}", "backbone=test_efficientnet", f"out={tmp_path / 'out.pt'}"]
    assert cli.main(args) == 2
    assert "--trust-pickle" in capsys.readouterr().err and not (tmp_path / "out.pt").exists()
