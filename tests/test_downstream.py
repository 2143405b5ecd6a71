"""Downstream heads with Keras semantics, smoothing, zero-shot compounds (HSEmotion's ABAW-6 notebooks)."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from fer_bench import labels as L
from fer_bench.methods.multitask.config import HeadConfig
from fer_bench.methods.multitask.downstream import compound, keras, smoothing, tasks
from fer_bench.metrics import tune_thresholds


def _settings(**fields):
    return tasks.resolve(OmegaConf.structured(HeadConfig(**fields)))


def test_keras_class_weight_divides_by_batch_size_not_weight_sum():
    torch.manual_seed(0)
    logits, target = torch.randn(5, 3), torch.tensor([0, 0, 0, 0, 2])
    w = torch.tensor([1.0, 1.0, 10.0])
    ce = -F.log_softmax(logits, 1)[torch.arange(5), target]
    keras_loss = keras.class_weighted_ce(logits, target, w)
    assert float(keras_loss) == pytest.approx(float((w[target] * ce).sum() / 5))
    torch_loss = F.cross_entropy(logits, target, weight=w)  # divides by Σ w_y: not the same on this batch
    assert abs(float(keras_loss) - float(torch_loss)) > 1e-3


def test_dense_head_glorot_init_and_l2_on_kernels_only():
    head = keras.DenseHead(20, 3, hidden=8)
    dense = [m for m in head.layers if isinstance(m, torch.nn.Linear)]
    assert [d.weight.shape for d in dense] == [(8, 20), (3, 8)]
    for d in dense:
        assert d.weight.abs().max() <= (6 / sum(d.weight.shape)) ** 0.5 and torch.all(d.bias == 0)
        d.bias.data.fill_(5.0)
    assert head.l2().item() == pytest.approx(sum(d.weight.square().sum().item() for d in dense))
    head = keras.DenseHead(20, 3, hidden=8)
    start = copy.deepcopy(head.state_dict())
    x, y = torch.randn(64, 20), torch.randint(0, 3, (64,))
    keras.fit(head, F.cross_entropy, (x, y), (x, y), lambda z, t: 0.0, epochs=1, batch_size=64, lr=0.01, l2=0.5)
    for lam in (0.5, 0.0):  # one full-batch step by hand: Adam(eps 1e-7) on CE + λ·ΣW²
        ref = keras.DenseHead(20, 3, hidden=8)
        ref.load_state_dict(start)
        adam = torch.optim.Adam(ref.parameters(), lr=0.01, eps=1e-7)
        (F.cross_entropy(ref(x), y) + lam * ref.l2()).backward()
        adam.step()
        same = all(torch.allclose(a, b, atol=1e-6) for a, b in zip(head.parameters(), ref.parameters(), strict=True))
        assert same == (lam == 0.5)


def test_au_weighted_bce_matches_the_formula():
    rng = np.random.default_rng(1)
    target = torch.tensor(rng.random((40, 4)) < [0.1, 0.3, 0.5, 0.8]).long()
    logits = torch.tensor(rng.normal(size=(40, 4)))
    w0, w1 = keras.au_weights(target)
    n, pos = 40, target.numpy().sum(0)
    assert np.allclose(w0.numpy(), n / (2 * (n - pos))) and np.allclose(w1.numpy(), n / (2 * pos))
    p = 1 / (1 + np.exp(-logits.numpy()))
    y = target.numpy()
    bce = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    ref = (w0.numpy() ** (1 - y) * w1.numpy() ** y * bce).mean(axis=1).mean()
    assert float(keras.weighted_bce(logits, target, w0, w1)) == pytest.approx(ref, rel=1e-6)


def test_smoothing_on_a_hand_made_sequence_with_gaps():
    frames = np.array([1, 2, 4, 7])  # frames 0, 3, 5, 6 have no face
    values = np.array([[1.0], [3.0], [5.0], [11.0]])
    videos = np.array(["v"] * 4)
    assert np.array_equal(smoothing.smooth(videos, frames, values, 0), values)
    grid = smoothing.fill_gaps(frames, values, 8)[:, 0]
    assert grid.tolist() == [1, 1, 3, 4, 5, 7, 9, 11]  # copied before the first, linear inside the gaps
    by_hand = [(1 + 1 + 3) / 3, (1 + 3 + 4) / 3, (4 + 5 + 7) / 3, (9 + 11) / 2]  # δ = 1, truncated at the end
    assert np.allclose(smoothing.smooth(videos, frames, values, 1)[:, 0], by_hand)
    two = smoothing.smooth(np.array(["a", "a", "b", "b"]), np.array([0, 1, 0, 1]), values, 5)
    assert np.allclose(two[:, 0], [2, 2, 8, 8])  # videos never mix
    assert smoothing.frame_keys(["x/v1/00012.jpg", "x/v1/00013_1.png"])[1].tolist() == [12, 13]
    with pytest.raises(ValueError, match="frame number"):
        smoothing.frame_keys(["x/v1/face.jpg"])


def test_zero_shot_compounds_mean_of_parents_max_over_faces_argmax():
    space = "basic8"
    ids = compound.compound_set("cexprdb")
    probs = np.random.default_rng(2).dirichlet(np.ones(8), size=5)
    scores = compound.compound_scores(probs, space, ids)
    position = {cid: i for i, cid in enumerate(L.space(space))}
    for k, cid in enumerate(ids):
        a, b = L.COMPOUND_PARENTS[cid]
        assert np.allclose(scores[:, k], (probs[:, position[a]] + probs[:, position[b]]) / 2)
    happy_surprised = [0.0, 0.45, 0, 0.45, 0, 0, 0, 0.1]  # neutral happy sad surprise fear disgust anger contempt
    assert L.COMPOUNDS[ids[int(compound.compound_scores(np.array([happy_surprised]), space, ids).argmax())]] == \
        "happily surprised"
    frame = np.array(["f1", "f1", "f2"])
    best = compound.max_over_faces(np.array([[0.1, 0.9], [0.5, 0.2], [0.3, 0.3]]), frame)
    assert best.tolist() == [[0.5, 0.9], [0.5, 0.9], [0.3, 0.3]]
    with pytest.raises(ValueError, match="no two basic parents"):
        compound.compound_scores(probs, space, [L.compound_id("appalled")])
    with pytest.raises(ValueError, match="compound label table"):
        compound.compound_set("rafdb")


def _table(n_per_split=(120, 60, 60), dim=8, seed=0):
    """Features whose first columns carry expression, V/A, AUs and intensity."""
    rng = np.random.default_rng(seed)
    n = sum(n_per_split)
    label = rng.integers(0, 8, n)
    x = rng.normal(0, 1, (n, dim)) * 0.3
    x[np.arange(n), label % dim] += 2.0
    va = np.tanh(x[:, :2] * 0.8)
    au = (x[:, :3] > 0.8).astype(float)
    split = np.repeat(["train", "val", "test"], n_per_split)
    scores = np.concatenate([np.eye(8)[label] * 4 + rng.normal(0, 0.1, (n, 8)), va], axis=1)
    return pd.DataFrame({"path": [f"img/{i}.png" for i in range(n)], "split": split, "label": label,
                         "valence": va[:, 0], "arousal": va[:, 1], "intensity": 1 / (1 + np.exp(-x[:, 2])),
                         **{f"au{a}": au[:, i] for i, a in enumerate((1, 2, 4))},
                         "embedding": list(x.astype(np.float32)), "scores": list(scores.astype(np.float32))})


def test_heads_learn_separable_toy_features():
    table = _table()
    for hidden in (0, 16):  # logistic regression and the one-hidden-layer MLP
        out = tasks.run(table, _settings(task="expr", hidden=hidden, epochs=30, batch_size=32, lr=0.03), "basic8")
        assert out["test/acc"] > 0.9, (hidden, out)
    va = tasks.run(table, _settings(task="va", inputs="embedding", epochs=30, batch_size=32, lr=0.03), "basic8")
    assert va["test/ccc_v"] > 0.8 and va["test/ccc_a"] > 0.8, va
    intensity = tasks.run(table, _settings(task="intensity", epochs=30, batch_size=32, lr=0.03), "basic8")
    assert intensity["test/ccc"] > 0.8, intensity


def test_au_thresholds_are_tuned_on_val_only():
    table = _table()
    settings = _settings(task="au", aus=[1, 2, 4], hidden=8, epochs=30, batch_size=32, lr=0.03)
    out = tasks.run(table, settings, "basic8")
    assert out["test/au_f1"] > out["test/au_f1_all_pos"] + 0.2, out
    scrambled_test = table.copy()
    test_rows = scrambled_test["split"] == "test"
    scrambled_test.loc[test_rows, ["au1", "au2", "au4"]] = 1 - scrambled_test.loc[test_rows, ["au1", "au2", "au4"]]
    assert tasks.run(scrambled_test, settings, "basic8")["au_thresholds"] == out["au_thresholds"]
    # the same thresholds as tuning the head's val predictions directly
    head_rows = {s: torch.tensor((table["split"] == s).to_numpy()) for s in ("train", "val")}
    x = torch.tensor(np.stack(table["embedding"]))
    y, _ = tasks.table_targets(settings, table)
    y = torch.tensor(y)
    head = tasks.train_head(settings, x[head_rows["train"]], y[head_rows["train"]], x[head_rows["val"]],
                            y[head_rows["val"]], 3)
    expected = tune_thresholds(tasks.predict(settings, head, x[head_rows["val"]]), y[head_rows["val"]])
    assert list(out["au_thresholds"].values()) == pytest.approx(expected.tolist())


def test_zero_shot_ce_and_settings_errors():
    table = _table()
    ids = compound.compound_set("cexprdb")
    table["compound"] = [ids[i % len(ids)] for i in range(len(table))]
    out = tasks.run(table, _settings(task="ce"), "basic8")
    assert 0.0 <= out["test/f1"] <= 1.0 and "val/acc" in out
    with pytest.raises(ValueError, match="task"):
        _settings(task="emotion")
    with pytest.raises(ValueError, match="inputs"):
        _settings(task="au", inputs="pixels")
    assert _settings(task="va").l2 == pytest.approx(1 / 1024)  # HSEmotion's VA head: l2 = 1/batch
