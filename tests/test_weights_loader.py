"""The one strict weight loader (``models.weights_file``): every way a file can fail to fit gives a report or an
error naming the file and the keys; files that need pickle are refused."""

import pytest
import torch
from torch import nn

from fer_bench.engine.runner import load_weights
from fer_bench.models.weights_file import (
    PickledWeightsError,
    WeightsMismatch,
    load_state_into,
    load_weights_into,
)


def net() -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))


def saved(state, path):
    torch.save(state, path)
    return path


@pytest.fixture
def source():
    torch.manual_seed(0)
    return net()


def test_a_fitting_file_loads_every_tensor_through_wrapper_prefixes(source, tmp_path):
    path = saved({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "ok.pth")
    target = net()
    report = load_weights_into(target, path, strip=("module.",))
    assert report.ok and set(report.loaded) == set(source.state_dict())
    for k, v in source.state_dict().items():
        assert torch.equal(target.state_dict()[k], v), k


def test_a_renamed_key_is_missing_and_unexpected_until_a_key_map_renames_it(source, tmp_path):
    state = dict(source.state_dict())
    state["2.weights"] = state.pop("2.weight")  # a typo in the file's layout
    path = saved(state, tmp_path / "renamed.pth")
    target = net()
    before = target[2].weight.clone()
    with pytest.raises(WeightsMismatch) as e:
        load_weights_into(target, path)
    assert str(tmp_path / "renamed.pth") in str(e.value)
    assert e.value.report.missing == ("2.weight",) and e.value.report.unexpected == ("2.weights",)
    assert "missing: 2.weight" in str(e.value) and "unexpected: 2.weights" in str(e.value)
    assert torch.equal(target[2].weight, before)  # a failed strict load changes nothing
    report = load_weights_into(target, path, key_map=lambda k: k.replace("weights", "weight"))
    assert report.ok and torch.equal(target[2].weight, source[2].weight)


def test_a_missing_key_fails_strictly_and_is_reported_when_not_strict(source, tmp_path):
    state = dict(source.state_dict())
    del state["1.running_var"]
    path = saved(state, tmp_path / "cut.pth")
    with pytest.raises(ValueError, match=r"cut\.pth does not fit Sequential \(missing: 1\.running_var\)"):
        load_weights_into(net(), path)
    target = net()
    report = load_weights_into(target, path, strict=False)
    assert report.missing == ("1.running_var",) and not report.ok
    assert torch.equal(target[0].weight, source[0].weight) and torch.equal(target[1].running_var, torch.ones(3))


def test_an_unexpected_key_fails_unless_its_prefix_is_ignored(source, tmp_path):
    state = {**source.state_dict(), "fc.weight": torch.zeros(7, 3)}
    path = saved(state, tmp_path / "extra.pth")
    with pytest.raises(WeightsMismatch, match=r"extra\.pth.*unexpected: fc\.weight"):
        load_weights_into(net(), path)
    report = load_weights_into(net(), path, ignore=("fc.",))
    assert report.ok and report.ignored == ("fc.weight",)


def test_a_shape_mismatch_names_both_shapes(source, tmp_path):
    state = {**source.state_dict(), "0.weight": torch.zeros(3, 5)}
    with pytest.raises(WeightsMismatch, match=r"shape\.pth.*shape mismatch: 0\.weight \(3, 5\) vs \(3, 4\)") as e:
        load_weights_into(net(), saved(state, tmp_path / "shape.pth"))
    assert not e.value.report.missing and not e.value.report.unexpected


def test_long_key_lists_are_cut_with_their_count(tmp_path):
    big = nn.Sequential(*[nn.Linear(2, 2) for _ in range(5)])  # 10 tensors
    with pytest.raises(WeightsMismatch, match=r"missing: 0\.weight, 0\.bias, .* \.\.\. \(10 in all\)"):
        load_weights_into(big, saved({}, tmp_path / "empty.pth"))


def test_a_second_key_for_the_same_tensor_is_unexpected(source):
    state = {**source.state_dict(), "module.0.bias": torch.zeros(3)}
    with pytest.raises(WeightsMismatch, match=r"mem\.pt.*unexpected: module\.0\.bias"):
        load_state_into(net(), state, "mem.pt", strip=("module.",))


class Payload:
    """Any Python object: loading it would need pickle."""


def test_a_pickle_only_file_is_refused_naming_the_file_and_the_converter(tmp_path):
    path = saved({"state_dict": net().state_dict(), "extra": Payload()}, tmp_path / "pickled.pth")
    target = net()
    before = target[0].weight.clone()
    with pytest.raises(PickledWeightsError, match=r"pickled\.pth.*Payload was not an allowed global.*--trust-pickle"):
        load_weights_into(target, path)
    assert torch.equal(target[0].weight, before)
    with pytest.raises(ValueError, match=r"not_torch\.pth is not a torch file"):
        load_weights_into(target, saved_text(tmp_path / "not_torch.pth"))
    with pytest.raises(FileNotFoundError, match=r"absent\.pth"):
        load_weights_into(target, tmp_path / "absent.pth")


def saved_text(path):
    path.write_text("not a checkpoint")
    return path


def test_a_run_checkpoint_that_does_not_fit_the_method_names_the_file(source, tmp_path):
    state = dict(source.state_dict())
    del state["2.bias"]
    path = saved({"state_dict": state, "epoch": 3}, tmp_path / "best.ckpt")
    with pytest.raises(WeightsMismatch, match=r"best\.ckpt does not fit the Sequential method.*missing: 2\.bias.*"
                                              r"same method and sizes"):
        load_weights(net(), path)
