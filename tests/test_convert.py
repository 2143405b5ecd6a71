"""The opt-in converter of whole pickled HSEmotion models, tested on pickles this test writes in the released
layouts: classes in a module that no longer exists when the file is converted (like a model tied to an old timm),
expression-only heads ``Linear(D, C)`` (enet_b0_8_best_afew, enet_b2_8, enet_b2_7, ...) and multitask heads
``Linear(D, C + 2)`` (*_va_mtl). HSEmotion's class order is alphabetical (av-savchenko/hsemotion,
hsemotion/facial_emotions.py ``idx_to_class``): Anger, Contempt, Disgust, Fear, Happiness, Neutral, Sadness,
Surprise; the 7-class models drop Contempt."""


import numpy as np
import pandas as pd
import pytest
import timm
import torch
from conftest import pickle_with_vanished_classes
from PIL import Image
from torch import nn

from fer_bench import cli
from fer_bench import labels as L
from fer_bench.config import build_config
from fer_bench.data.records import read_rgb
from fer_bench.data.transforms import eval_transform
from fer_bench.deploy.inference import load_weights_model
from fer_bench.deploy.predict import image_batch
from fer_bench.methods.multitask import convert
from fer_bench.methods.multitask.net import build_from_config, build_multitask_net, load_net_weights
from fer_bench.models import mobilefacenet, weights_file

# fer-bench basic8 order (neutral, happy, sad, surprise, fear, disgust, anger, contempt) as HSEmotion rows
HSE8_ROWS = [5, 4, 6, 7, 3, 2, 0, 1]
HSE7_ROWS = [4, 3, 5, 6, 2, 1, 0]  # basic7 without contempt, in HSEmotion's 7-class order


def _faces(folder, count=2, size=300):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size - 20 * i, 3), dtype=np.uint8)).save(folder / f"f{i}.png")
    return folder


def test_class_rows_follow_the_label_tables():
    names8 = L.NATIVE_TABLES["hsemotion8"].native_names
    assert [L.expression_id(names8[j]) for j in HSE8_ROWS] == list(L.space("basic8"))
    names7 = L.NATIVE_TABLES["hsemotion7"].native_names
    assert [L.expression_id(names7[j]) for j in HSE7_ROWS] == list(L.space("basic7"))


def test_converts_a_pickled_multitask_model_with_a_sequential_classifier(tmp_path):
    torch.manual_seed(0)
    old = timm.create_model("test_efficientnet", num_classes=0)
    old.classifier = nn.Sequential(nn.Linear(old.num_features, 10))  # as in some official files
    old.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = old(x)  # timm applies .classifier in forward_head
    src, out = tmp_path / "enet_mtl.pt", tmp_path / "enet_mtl.state.pt"
    pickle_with_vanished_classes(old, src, "timm_0_4_5_models_efficientnet")
    with pytest.warns(UserWarning, match="arbitrary code"):
        net, meta = convert.convert(src, "test_efficientnet", out)
    assert meta["va"] and meta["num_classes"] == 8 and meta["space"] == "basic8"
    reordered = torch.cat([expected[:, HSE8_ROWS], expected[:, 8:]], dim=1)
    with torch.no_grad():
        assert torch.allclose(net.eval()(x), reordered, atol=1e-5)
    state, saved = weights_file.load(out)  # tensors and plain metadata: loads with weights_only=True
    assert set(state) == set(net.state_dict()) and saved == meta
    fresh, _ = build_multitask_net("test_efficientnet", 8)
    load_net_weights(fresh, out)
    with torch.no_grad():
        assert torch.allclose(fresh.eval()(x), reordered, atol=1e-5)


def test_converts_a_pickled_mobilefacenet_with_fc_at_its_own_size(tmp_path):
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
    src, out = tmp_path / "mbf_va_mtl.pt", tmp_path / "mbf.pt"
    pickle_with_vanished_classes(old, src, "hsemotion_mobilefacenet")
    with pytest.warns(UserWarning):
        net, meta = convert.convert(src, "mobilefacenet_tiny", out, input_size=32)
    assert (meta["input_size"], meta["mean"], meta["std"]) == (32, [0.5] * 3, [0.5] * 3)
    with torch.no_grad():
        assert torch.allclose(net.eval()(x)[:, :8], expected[:, HSE8_ROWS], atol=1e-5)
    # the GDC kernel depends on the input size: a config naming no size builds the 32-px network from the metadata
    cfg = build_config(["method=multitask", "backbone.name=mobilefacenet_tiny", f"method.weights={out}"])
    rebuilt, info = build_from_config(cfg)
    assert info.image_size == 32 and cfg.backbone.input_size == 32
    with torch.no_grad():
        assert torch.allclose(rebuilt.eval()(x)[:, 8:], expected[:, 8:], atol=1e-5)
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="does not fit backbone"):
        convert.convert(src, "test_efficientnet", tmp_path / "wrong.pt")


def test_expression_only_b2_converts_and_predicts_8_probabilities_without_va(tmp_path):
    torch.manual_seed(2)
    old = timm.create_model("efficientnet_b2", pretrained=False)  # the architecture of enet_b2_8.pt
    old.classifier = nn.Linear(old.num_features, 8)
    old.eval()
    src, out = tmp_path / "enet_b2_8.pt", tmp_path / "enet_b2_8.fb.pt"
    pickle_with_vanished_classes(old, src, "timm_0_4_5_models_efficientnet_b2")
    with pytest.warns(UserWarning, match="arbitrary code"):  # 64 px instead of B2's 260 keeps the test fast
        assert cli.main(["convert", f"src={src}", "backbone=efficientnet_b2", f"out={out}", "input_size=64",
                         "--trust-pickle"]) == 0
    meta = weights_file.read_meta(out)
    assert not meta["va"] and meta["num_classes"] == 8 and meta["space"] == "basic8"
    assert (meta["input_size"], meta["recipe"]) == (64, "command line")
    assert meta["mean"] == [0.485, 0.456, 0.406] and meta["std"] == [0.229, 0.224, 0.225]  # HSEmotion's, not timm's
    faces = _faces(tmp_path / "faces")
    preds = tmp_path / "preds.csv"
    assert cli.main(["predict", f"weights={out}", f"input={faces}", f"out={preds}"]) == 0
    table = pd.read_csv(preds)
    assert list(table.filter(like="prob_").columns) == [f"prob_{c}" for c in L.class_names("basic8")]
    assert not {"valence", "arousal"} & set(table.columns)
    # the source model's softmax on the same input, preprocessed as the metadata says, rows in fer-bench order
    transform = eval_transform(64, meta["mean"], meta["std"])
    images = torch.stack([torch.from_numpy(transform(image=read_rgb(p))["image"].transpose(2, 0, 1).copy())
                          for p in table["path"]])
    with torch.no_grad():
        expected = torch.softmax(old(images), dim=1)[:, HSE8_ROWS].numpy()
    assert np.abs(table.filter(like="prob_").to_numpy() - expected).max() < 1e-5


def test_converted_multitask_model_predicts_valence_and_arousal(tmp_path):
    torch.manual_seed(3)
    old = timm.create_model("test_efficientnet", num_classes=10).eval()  # enet_b0_8_va_mtl layout
    src, out = tmp_path / "enet_b0_8_va_mtl.pt", tmp_path / "mtl.pt"
    pickle_with_vanished_classes(old, src, "timm_0_9_models_efficientnet")
    with pytest.warns(UserWarning):
        assert cli.main(["convert", f"src={src}", "backbone=test_efficientnet", f"out={out}", "input_size=64",
                         "--trust-pickle"]) == 0
    faces = _faces(tmp_path / "faces", size=80)
    preds = tmp_path / "preds.csv"
    assert cli.main(["predict", f"weights={out}", f"input={faces}", f"out={preds}"]) == 0
    table = pd.read_csv(preds)
    images = image_batch(load_weights_model(out), table["path"].tolist())
    assert images.shape[-1] == 64
    with torch.no_grad():
        scores = old(images)
    assert np.allclose(table["valence"], scores[:, 8].clamp(-1, 1), atol=1e-5)
    assert np.allclose(table["arousal"], scores[:, 9].clamp(-1, 1), atol=1e-5)
    assert np.allclose(table.filter(like="prob_"), torch.softmax(scores[:, :8], 1)[:, HSE8_ROWS], atol=1e-5)


def test_seven_class_model_maps_to_basic7_and_odd_heads_are_refused(tmp_path):
    torch.manual_seed(4)
    old = timm.create_model("test_efficientnet", num_classes=7).eval()  # enet_b2_7 layout
    src = tmp_path / "enet_7.pt"
    pickle_with_vanished_classes(old, src, "timm_models_7")
    x = torch.randn(1, 3, 64, 64)
    with pytest.warns(UserWarning):
        net, meta = convert.convert(src, "test_efficientnet", tmp_path / "seven.pt")
    assert (meta["space"], meta["va"], meta["class_names"]) == ("basic7", False, L.class_names("basic7"))
    with torch.no_grad():
        assert torch.allclose(net.eval()(x), old(x)[:, HSE7_ROWS], atol=1e-5)
    cfg = build_config(["method=multitask", "backbone.name=test_efficientnet",
                        f"method.weights={tmp_path / 'seven.pt'}"])
    with pytest.raises(ValueError, match="7-class head .*set data.space=basic7"):
        build_from_config(cfg)  # the multitask default space is basic8
    torch.save(timm.create_model("test_efficientnet", num_classes=5), tmp_path / "five.pt")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="5 outputs; HSEmotion models have 7 or 8"):
        convert.convert(tmp_path / "five.pt", "test_efficientnet", tmp_path / "x.pt")


def test_cli_convert_is_opt_in(tmp_path, capsys):
    src = tmp_path / "model.pt"
    torch.save(nn.Linear(3, 10), src)
    args = ["convert", f"src={src}", "backbone=test_efficientnet", f"out={tmp_path / 'out.pt'}"]
    assert cli.main(args) == 2
    assert "--trust-pickle" in capsys.readouterr().err and not (tmp_path / "out.pt").exists()


def test_predict_needs_exactly_one_of_run_and_weights(tmp_path, capsys):
    faces = _faces(tmp_path / "faces", count=1, size=40)
    assert cli.main(["predict", f"input={faces}", f"out={tmp_path / 'p.csv'}"]) == 2
    assert "give run=<run dir> or weights=<converted file>" in capsys.readouterr().err
    plain = tmp_path / "plain.pt"
    torch.save(build_multitask_net("test_efficientnet", 8)[0].state_dict(), plain)
    assert cli.main(["predict", f"weights={plain}", f"input={faces}", f"out={tmp_path / 'p.csv'}"]) == 2
    assert "no fer-bench metadata naming the backbone" in capsys.readouterr().err
