"""Input size, mean and std follow the model's own recipe: ``backbone.input_size`` / ``mean`` / ``std`` resolve from
the user's value, else a converted file's metadata, else the backbone's config; exports carry them.

HSEmotion's recipes (av-savchenko/hsemotion, hsemotion/facial_emotions.py: B0 224 px, B2 260 px, ImageNet mean/std;
sb-ai-lab/EmotiEffLib: MobileViT 224 px with ImageNet mean/std) differ from timm's ``pretrained_cfg`` (efficientnet_b2
256 px; MobileViT 256 px, mean 0, std 1)."""

import json

import onnx
import pytest
import timm
import torch
from conftest import pickle_with_vanished_classes
from torch import nn

from fer_bench import cli
from fer_bench.config import ConfigError, build_config
from fer_bench.engine import runner
from fer_bench.methods.multitask import convert

IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


@pytest.fixture(scope="module")
def mobilevit(tmp_path_factory):
    """A converted MobileViT multitask model (mobilevit_va_mtl layout: classifier ``head.fc``, 8 + 2 outputs)."""
    folder = tmp_path_factory.mktemp("mobilevit")
    torch.manual_seed(0)
    old = timm.create_model("mobilevit_xxs", pretrained=False)
    old.head.fc = nn.Linear(old.num_features, 10)
    old.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = old(x)
    pickle_with_vanished_classes(old, folder / "mobilevit_va_mtl.pt", "timm_0_9_mobilevit")
    with pytest.warns(UserWarning):
        net, meta = convert.convert(folder / "mobilevit_va_mtl.pt", "mobilevit_xxs", folder / "mobilevit.pt")
    with torch.no_grad():
        assert torch.allclose(net.eval()(x)[:, 8:], expected[:, 8:], atol=1e-5)
    return folder / "mobilevit.pt", meta


def test_hsemotion_recipes_differ_from_timms_config():
    timm_cfg = timm.get_pretrained_cfg("mobilevit_xs")
    assert (timm_cfg.input_size[-1], tuple(timm_cfg.mean)) == (256, (0.0, 0.0, 0.0))
    assert convert.recipe("mobilevit_xs") == {"input_size": 224, "mean": IMAGENET[0], "std": IMAGENET[1]}
    assert timm.get_pretrained_cfg("efficientnet_b2").input_size[-1] == 256
    assert convert.recipe("efficientnet_b2")["input_size"] == 260
    assert convert.recipe("tf_efficientnet_b0.ns_jft_in1k")["input_size"] == 224
    assert convert.recipe("mobilefacenet") == {"input_size": 112, "mean": [0.5] * 3, "std": [0.5] * 3}
    assert convert.recipe("resnet18") == {}


def test_keys_resolve_from_converted_metadata_and_a_user_value_wins(mobilevit):
    path, meta = mobilevit
    assert (meta["input_size"], meta["mean"], meta["std"], meta["recipe"]) == (224, *IMAGENET, "hsemotion")
    base = ["method=multitask", "backbone.name=mobilevit_xxs", f"method.weights={path}"]
    cfg = build_config(base)
    needs = runner.build_method(cfg).data_needs()
    assert (needs.image_size, list(needs.mean), list(needs.std)) == (224, *IMAGENET)
    assert (cfg.backbone.input_size, list(cfg.backbone.mean), list(cfg.backbone.std)) == (224, *IMAGENET)
    cfg = build_config([*base, "backbone.input_size=96", "backbone.mean=[0.5,0.5,0.5]", "data.image_size=48"])
    needs = runner.build_method(cfg).data_needs()  # backbone.input_size beats data.image_size; std from the file
    assert (needs.image_size, list(needs.mean), list(needs.std)) == (96, [0.5] * 3, IMAGENET[1])
    # a baseline starting from the converted backbone (backbone.weights) takes the same recipe
    cfg = build_config(["backbone.name=mobilevit_xxs", f"backbone.weights={path}"])
    needs = runner.build_method(cfg).data_needs()
    assert (needs.image_size, list(needs.mean)) == (224, IMAGENET[0])
    # without converted weights: timm's config (data.image_size for the size when set)
    cfg = build_config(["backbone.name=mobilevit_xxs", "data.image_size=64"])
    needs = runner.build_method(cfg).data_needs()
    assert (needs.image_size, list(needs.mean), list(needs.std)) == (64, [0.0] * 3, [1.0] * 3)


def test_bad_values_are_named():
    with pytest.raises(ConfigError, match=r"backbone.std' = \[0.0, 1.0, 1.0\]; give 3 RGB values, all > 0"):
        build_config(["backbone.std=[0,1,1]"])
    with pytest.raises(ConfigError, match="backbone.mean' = .*give 3 RGB values"):
        build_config(["backbone.mean=[0.5,0.5]"])
    with pytest.raises(ConfigError, match="backbone.input_size' = 0"):
        build_config(["backbone.input_size=0"])
    with pytest.raises(ConfigError, match="backbone.mean: method=qcs has its own input recipe"):
        build_config(["method=qcs", "backbone.mean=[0.5,0.5,0.5]"])


@pytest.mark.slow  # one ONNX export (torch.export)
def test_onnx_export_of_a_converted_model_carries_its_recipe(tmp_path):
    torch.manual_seed(1)
    old = timm.create_model("test_efficientnet", num_classes=8).eval()  # an expression-only layout
    pickle_with_vanished_classes(old, tmp_path / "enet_8.pt", "timm_old_efficientnet")
    with pytest.warns(UserWarning):
        assert cli.main(["convert", f"src={tmp_path / 'enet_8.pt'}", "backbone=test_efficientnet",
                         f"out={tmp_path / 'enet.pt'}", "input_size=48", "mean=0.5,0.4,0.3", "std=0.2,0.2,0.2",
                         "--trust-pickle"]) == 0
    assert cli.main(["export", f"weights={tmp_path / 'enet.pt'}", f"out={tmp_path / 'onnx'}"]) == 0
    props = {p.key: json.loads(p.value) for p in onnx.load(str(tmp_path / "onnx" / "model.onnx")).metadata_props}
    assert props["input"]["size"] == 48
    assert props["input"]["mean"] == [0.5, 0.4, 0.3] and props["input"]["std"] == [0.2, 0.2, 0.2]
    assert props["outputs"] == ["logits"] and len(props["class_names"]) == 8
    sidecar = json.loads((tmp_path / "onnx" / "model.json").read_text())
    assert sidecar["input"] == props["input"]
