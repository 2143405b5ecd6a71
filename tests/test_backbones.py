"""The backbone factory: timm names, local state_dict weights loaded strictly."""

import pytest
import torch

from fer_bench.models import backbones


def test_create_reports_features_and_normalisation():
    model, info = backbones.create("resnet10t")
    assert info.num_features == 512 and info.image_size == 176 and len(info.mean) == 3
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 512)


def test_local_weights_load_with_wrapper_prefix_and_classifier(tmp_path):
    source, _ = backbones.create("resnet10t")
    with torch.no_grad():
        for p in source.parameters():
            p.uniform_(-0.1, 0.1)
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    state["module.fc.weight"] = torch.zeros(7, 512)  # a classifier the feature extractor does not use
    torch.save(state, tmp_path / "w.pth")
    loaded, _ = backbones.create("resnet10t", weights=str(tmp_path / "w.pth"))
    for (k, a), b in zip(source.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_weights_that_do_not_fit_fail_naming_keys(tmp_path):
    source, _ = backbones.create("resnet10t")
    state = source.state_dict()
    state.pop("conv1.0.weight")
    state["layer1.0.conv1.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError) as e:
        backbones.create("resnet10t", weights=str(tmp_path / "bad.pth"))
    assert "missing: conv1.0.weight" in str(e.value) and "shape mismatch: layer1.0.conv1.weight" in str(e.value)
    with pytest.raises(FileNotFoundError):
        backbones.create("resnet10t", weights=str(tmp_path / "absent.pth"))


@pytest.mark.parametrize(("name", "options", "size"), [
    ("resnet10t", {}, 32),  # timm, pooled
    ("mobilefacenet_tiny", {"image_size": 32}, 32),  # local families, pooled, built for the input size
    ("ddamfn_tiny", {"image_size": 32}, 32),
    ("resnet10t", {"features_only": True}, 32),  # timm, multi-scale trunk
    ("ir50", {"features_only": True, "units": (1, 1, 1)}, 32),  # local family, multi-scale trunk
])
def test_every_family_builds_through_the_factory_without_downloading(name, options, size):
    model, info = backbones.create(name, pretrained=False, **options)
    out = model(torch.zeros(2, 3, size, size))
    if options.get("features_only"):
        assert [f.shape[1] for f in out] == list(model.channels) and info.num_features == model.channels[-1]
        assert [size // f.shape[-1] for f in out] == list(model.reductions)
    else:
        assert out.shape == (2, info.num_features)


@pytest.mark.parametrize("name", ["mobilefacenet_tiny", "ddamfn_tiny", "ir50"])
def test_local_families_have_no_hub_weights_one_shape_and_their_own_options(name):
    trunk = name == "ir50"
    with pytest.raises(ValueError, match=f"backbone '{name}' has no hub weights"):
        backbones.create(name, pretrained=True, features_only=trunk)  # refused before any hub access
    with pytest.raises(ValueError, match=f"'{name}' is a .* only"):
        backbones.create(name, features_only=not trunk)
    with pytest.raises(ValueError, match=f"backbone '{name}' does not take global_pool"):
        backbones.create(name, features_only=trunk, global_pool="avg")  # a timm-only option


def test_local_family_weights_load_strictly_by_name(tmp_path):
    torch.manual_seed(0)
    source, _ = backbones.create("mobilefacenet_tiny", image_size=32)
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    state["module.fc.weight"] = torch.zeros(8, 512)  # HSEmotion's classifier: not part of the extractor
    torch.save(state, tmp_path / "mbf.pth")
    loaded, info = backbones.create("mobilefacenet_tiny", weights=str(tmp_path / "mbf.pth"), image_size=32)
    assert info.image_size == 32 and info.mean == (0.5, 0.5, 0.5)
    for (k, a), b in zip(source.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    with pytest.raises(ValueError, match=r"mbf\.pth does not fit the backbone \(shape mismatch: features\."):
        backbones.create("mobilefacenet_tiny", weights=str(tmp_path / "mbf.pth"))  # GDC kernel of 112, not 32
    torch.save({k: v for k, v in state.items() if "features" not in k}, tmp_path / "cut.pth")
    with pytest.raises(ValueError, match=r"cut\.pth does not fit the backbone \(missing: features\."):
        backbones.create("mobilefacenet_tiny", weights=str(tmp_path / "cut.pth"), image_size=32)


def test_timm_trunk_weights_are_checked_against_the_whole_model(tmp_path):
    torch.manual_seed(0)
    whole, _ = backbones.create("resnet10t")
    with torch.no_grad():
        for p in whole.parameters():
            p.uniform_(-0.1, 0.1)
    torch.save(whole.state_dict(), tmp_path / "r.pth")
    trunk, _ = backbones.create("resnet10t", weights=str(tmp_path / "r.pth"), features_only=True)
    x = torch.randn(1, 3, 64, 64)
    whole.eval(), trunk.eval()
    with torch.no_grad():
        feats = trunk(x)
        stem = whole.maxpool(whole.act1(whole.bn1(whole.conv1(x))))
        expected = [whole.layer1(stem)]
        expected += [whole.layer2(expected[0])]
        expected += [whole.layer3(expected[1])]
    for ours, theirs in zip(feats, expected, strict=True):
        assert torch.equal(ours, theirs)
    state = whole.state_dict()
    state.pop("layer4.0.conv1.weight")  # a stage the trunk does not use: still part of the file's network
    torch.save(state, tmp_path / "cut.pth")
    with pytest.raises(ValueError, match=r"cut\.pth does not fit the backbone \(missing: layer4\.0\.conv1\.weight"):
        backbones.create("resnet10t", weights=str(tmp_path / "cut.pth"), features_only=True)
