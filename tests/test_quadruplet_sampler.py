"""Quadruplet sampler: invariants, negative-class distributions, epoch length, rank sharding (birdwcp/QCS)."""

from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from fer_bench.data.samplers import QuadrupletSampler

COUNTS = (10, 20, 30, 40)
LABELS = np.random.default_rng(0).permutation(np.repeat(np.arange(4), COUNTS)).tolist()
CHI2_DF2_P001 = 13.82  # χ² critical value, 2 degrees of freedom, p = 0.001


def chi2(observed: dict, expected: dict) -> float:
    total = sum(observed.values())
    return sum((observed.get(c, 0) - total * p) ** 2 / (total * p) for c, p in expected.items())


@pytest.mark.parametrize("anchors", ["shuffle", "balanced"])
@pytest.mark.parametrize("negatives", ["frequency", "balanced"])
def test_quadruplet_invariants(anchors, negatives):
    sampler = QuadrupletSampler(LABELS, batch_size=4, seed=1, anchors=anchors, negatives=negatives)
    quads = list(sampler)
    assert len(quads) == len(sampler)
    for a, p, n, n2 in quads:
        assert isinstance(a, int)
        assert p != a and LABELS[p] == LABELS[a]
        assert LABELS[n] != LABELS[a]
        assert n2 != n and LABELS[n2] == LABELS[n]


def _negative_histograms(negatives, epochs=40):
    sampler = QuadrupletSampler(LABELS, batch_size=1, negatives=negatives)
    by_anchor = {c: Counter() for c in range(4)}
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for a, _, n, _ in sampler:
            by_anchor[LABELS[a]][LABELS[n]] += 1
    return by_anchor


def test_frequency_negatives_follow_class_frequency_and_balanced_are_uniform():
    freq, bal = _negative_histograms("frequency"), _negative_histograms("balanced")
    for y in range(4):
        others = [c for c in range(4) if c != y]
        by_frequency = {c: COUNTS[c] / sum(COUNTS[o] for o in others) for c in others}
        uniform = {c: 1 / 3 for c in others}
        assert chi2(freq[y], by_frequency) < CHI2_DF2_P001
        assert chi2(bal[y], uniform) < CHI2_DF2_P001
        assert chi2(freq[y], uniform) > CHI2_DF2_P001  # the two modes are distinguishable


def test_balanced_anchors_epoch_fraction_and_class_balance():
    labels = np.repeat(np.arange(4), (100, 200, 300, 600)).tolist()  # 1200 images
    sampler = QuadrupletSampler(labels, batch_size=8, anchors="balanced", epoch_fraction=1 / 12)
    assert sampler.num_global == 100 and len(sampler) == 96  # len // 12, cut to whole batches
    assert (
        len(QuadrupletSampler(labels, 8, anchors="balanced", epoch_fraction=1 / 12, drop_last=False)) == 100
    )
    anchors = Counter()
    for epoch in range(30):
        sampler.set_epoch(epoch)
        anchors.update(labels[a] for a, *_ in sampler)
    assert chi2(anchors, {0: 0.25, 1: 0.25, 2: 0.25, 3: 0.25}) < 16.27  # df 3, p = 0.001


def test_ranks_get_disjoint_reproducible_shards():
    def shards(seed, epoch):
        out = []
        for rank in range(3):
            s = QuadrupletSampler(LABELS, batch_size=5, seed=seed, num_replicas=3, rank=rank)
            s.set_epoch(epoch)
            out.append(list(s))
        return out

    ranks = shards(seed=7, epoch=2)
    assert [len(r) for r in ranks] == [30, 30, 30]  # 100 // 3 = 33 → 6 whole batches of 5 each
    anchors = [a for shard in ranks for a, *_ in shard]
    assert len(set(anchors)) == len(anchors)  # shuffle anchors: no image is an anchor on two ranks
    glob = QuadrupletSampler(LABELS, batch_size=5, seed=7).global_quadruplets(2)
    for rank, shard in enumerate(ranks):
        assert shard == [tuple(q) for q in glob[: 30 * 3][rank::3].tolist()]
    assert shards(seed=7, epoch=2) == ranks
    assert shards(seed=7, epoch=3) != ranks and shards(seed=8, epoch=2) != ranks


def test_single_image_class_raises():
    with pytest.raises(ValueError, match=r"\[3\].*single image"):
        QuadrupletSampler([0, 0, 1, 1, 2, 2, 3], batch_size=1)
    with pytest.raises(ValueError, match="at least 2 classes"):
        QuadrupletSampler([0, 0, 0], batch_size=1)
    with pytest.raises(ValueError, match="one batch"):
        QuadrupletSampler([0, 0, 1, 1], batch_size=8)


class _Quads(Dataset):
    def __len__(self):
        return len(LABELS)

    def __getitem__(self, idx):
        a, p, n, n2 = idx
        return torch.tensor([a, p, n, n2]), LABELS[a], LABELS[n]


def test_dataloader_consumes_tuples():
    sampler = QuadrupletSampler(LABELS, batch_size=8)
    batches = list(DataLoader(_Quads(), sampler=sampler, batch_size=8))
    assert len(batches) == len(sampler) // 8
    quads, y, y_n = batches[0]
    assert quads.shape == (8, 4) and y.shape == y_n.shape == (8,)
    assert (y != y_n).all()
