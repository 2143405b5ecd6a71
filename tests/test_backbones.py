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
