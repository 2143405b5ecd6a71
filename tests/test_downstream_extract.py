"""``fer-bench extract`` and ``fer-bench downstream``: one parquet row per image with the records' ids, scores that
are exactly the head applied to the embedding, and heads trained from the file by the CLI."""

import json

import numpy as np
import pytest
import torch

from fer_bench import cli
from fer_bench.config import build_config
from fer_bench.data.readers import read_records
from fer_bench.methods.multitask.downstream import extract
from fer_bench.methods.multitask.net import build_multitask_net

DATA = ["method=multitask", "profile=cpu", "backbone.name=mobilefacenet_tiny", "data.synth.subjects=6",
        "data.synth.per_subject=1", "data.synth.size=32", "data.image_size=32", "data.num_workers=0",
        "data.batch_size=8"]


def test_backbone_embedding_sizes():
    sizes = {name: build_multitask_net(name)[1].num_features
             for name in ("tf_efficientnet_b0.ns_jft_in1k", "tf_efficientnet_b2.ns_jft_in1k", "mobilefacenet")}
    assert sizes == {"tf_efficientnet_b0.ns_jft_in1k": 1280, "tf_efficientnet_b2.ns_jft_in1k": 1408,
                     "mobilefacenet": 512}


def test_extract_writes_one_row_per_image_with_matching_ids(tmp_path):
    cfg = build_config(DATA)
    torch.manual_seed(0)
    net, info = build_multitask_net("mobilefacenet_tiny", 8, 32)
    out = extract.extract(cfg, net, info.image_size, info.mean, info.std, tmp_path / "f.parquet")
    table, meta = extract.read_features(out)
    records, _ = read_records(cfg.data)
    assert len(table) == len(records) == 6 * 8
    assert table["path"].tolist() == records["path"].tolist()
    assert set(table["split"]) == {"train", "val", "test"}
    assert meta["space"] == "basic8" and len(meta["class_names"]) == 8
    embedding, scores = np.stack(table["embedding"]), np.stack(table["scores"])
    assert embedding.shape == (48, 512) and scores.shape == (48, 10)
    w, b = net.head.weight.detach().numpy(), net.head.bias.detach().numpy()
    assert np.allclose(scores, embedding @ w.T + b, rtol=1e-5, atol=1e-6)
    # the rows are the images: re-embedding one image by hand gives its row
    from fer_bench.data.datamodule import FERDataset
    from fer_bench.data.transforms import eval_transform

    one = FERDataset(records.iloc[[5]], np.array([0]), eval_transform(32, info.mean, info.std))[0]["image"]
    net.eval()
    with torch.no_grad():
        assert np.allclose(net.embed(one[None]).numpy()[0], embedding[5], atol=1e-5)
    expected = records["expression"].map({cid: i for i, cid in enumerate(range(8))}).to_numpy()
    assert np.array_equal(table["label"].to_numpy(), expected)


def test_cli_extract_from_network_weights_then_downstream_au_head(tmp_path, capsys):
    net, _ = build_multitask_net("mobilefacenet_tiny", 8, 32)
    weights = tmp_path / "net.pt"
    torch.save(net.state_dict(), weights)
    features = tmp_path / "features.parquet"
    assert cli.main(["extract", *DATA, f"method.weights={weights}", f"out={features}"]) == 0
    assert len(extract.read_features(features)[0]) == 48
    args = ["downstream", f"features={features}", "task=au", "aus=[1,2,4,6]", "au_presence=0.35", "epochs=3",
            "batch_size=16"]
    assert cli.main(args) == 0
    result = json.loads(features.with_suffix(".au.json").read_text())
    assert {"val/au_f1", "test/au_f1", "test/au_f1_all_pos"} <= set(result)
    assert set(result["au_thresholds"]) == {"au1", "au2", "au4", "au6"}
    capsys.readouterr()
    assert cli.main(["downstream", f"features={features}", "task=au", "hiden=3"]) == 2
    assert "hiden" in capsys.readouterr().err
    assert cli.main(["extract", *DATA, f"out={features}"]) == 2  # neither a run nor network weights
    assert "method.weights" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["task=emotions", "inputs=pixels"])
def test_cli_downstream_names_a_bad_setting(tmp_path, capsys, bad):
    assert cli.main(["downstream", f"features={tmp_path / 'missing.parquet'}", bad]) == 2
    assert bad.split("=")[0] in capsys.readouterr().err


def test_expression_only_network_extracts_class_scores_only_and_feeds_downstream(tmp_path):
    net, _ = build_multitask_net("mobilefacenet_tiny", 8, 32, va=False)  # e.g. a converted enet_b2_8
    weights = tmp_path / "expr_only.pt"
    torch.save(net.state_dict(), weights)  # a plain state_dict: the layout comes from the head's width
    features = tmp_path / "features.parquet"
    assert cli.main(["extract", *DATA, f"method.weights={weights}", f"out={features}"]) == 0
    table, meta = extract.read_features(features)
    scores = np.stack(table["scores"])
    assert scores.shape == (48, 8) and meta["score_names"] == meta["class_names"]
    w, b = net.head.weight.detach().numpy(), net.head.bias.detach().numpy()
    assert np.allclose(scores, np.stack(table["embedding"]) @ w.T + b, rtol=1e-5, atol=1e-6)
    assert cli.main(["downstream", f"features={features}", "task=expr", "inputs=scores", "epochs=2",
                     "batch_size=16"]) == 0
    assert "test/acc" in json.loads(features.with_suffix(".expr.json").read_text())
    torch.save(build_multitask_net("mobilefacenet_tiny", 9, 32, va=False)[0].state_dict(), weights)
    with pytest.raises(ValueError, match="head width 9 is neither 8 classes nor 8 \\+ valence/arousal"):
        extract.command(None, "best", str(features), [*DATA, f"method.weights={weights}"])
