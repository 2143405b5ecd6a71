"""Bootstrap intervals (metrics/intervals.py) against ``scipy.stats.bootstrap`` called independently with reference
statistics (numpy, scikit-learn) on fixed arrays, and the cluster bootstrap against the image-level one."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from fer_bench.metrics import intervals as iv

C = 5
# scikit-learn's references warn about resamples where a predicted class never occurs as a target
pytestmark = pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")


def _predictions(n: int, seed: int = 0, right: float = 0.8):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, C, n)
    y_pred = np.where(rng.random(n) < right, y_true, rng.integers(0, C, n))
    return y_true, y_pred


def _classification(y_true, y_pred, **kwargs) -> iv.Interval:
    stats = iv.classification_stats(y_true, y_pred, C)

    def value(sums):
        cm = iv.cm_of(sums, C)
        return np.stack([iv.accuracy(cm), iv.uar(cm), iv.macro_f1(cm)])

    return iv.bootstrap_interval(stats, value, **kwargs)


def test_metric_fns_equal_scikit_learn_on_every_row_of_resampled_indices():
    y_true, y_pred = _predictions(200)
    idx = np.random.default_rng(1).integers(0, 200, (6, 200))
    fns = iv.metric_fns(C)
    refs = {"acc": accuracy_score, "uar": balanced_accuracy_score, "f1": lambda t, p: f1_score(t, p, average="macro")}
    for name, ref in refs.items():
        got = fns[name](y_true[idx], y_pred[idx])
        assert got.shape == (6,)
        np.testing.assert_allclose(got, [ref(y_true[i], y_pred[i]) for i in idx], rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", ["bca", "percentile"])
def test_accuracy_interval_equals_scipy_bootstrap_of_the_mean(method):
    y_true, y_pred = _predictions(300, seed=2)
    got = _classification(y_true, y_pred, n_resamples=999, seed=7, method=method)
    ref = scipy.stats.bootstrap(((y_true == y_pred).astype(float),), np.mean, n_resamples=999,
                                method="BCa" if method == "bca" else "percentile", rng=np.random.default_rng(7))
    assert got.label() == ("BCa" if method == "bca" else "percentile") and got.units == 300
    assert got.low[0] == pytest.approx(ref.confidence_interval.low, abs=1e-12)
    assert got.high[0] == pytest.approx(ref.confidence_interval.high, abs=1e-12)
    assert got.low[0] < np.mean(y_true == y_pred) < got.high[0]


def test_uar_and_f1_intervals_equal_scipy_paired_bootstrap_of_scikit_learn():
    y_true, y_pred = _predictions(120, seed=3, right=0.6)
    got = _classification(y_true, y_pred, n_resamples=200, seed=11)
    for row, fn in ((1, balanced_accuracy_score), (2, lambda t, p: f1_score(t, p, average="macro"))):
        ref = scipy.stats.bootstrap((y_true, y_pred), fn, paired=True, vectorized=False, n_resamples=200,
                                    method="BCa", rng=np.random.default_rng(11))
        assert got.low[row] == pytest.approx(ref.confidence_interval.low, abs=1e-12)
        assert got.high[row] == pytest.approx(ref.confidence_interval.high, abs=1e-12)


def _np_ccc(x, y):
    return 2 * np.cov(x, y, bias=True)[0, 1] / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


def test_ccc_interval_equals_scipy_paired_bootstrap_of_a_numpy_ccc():
    rng = np.random.default_rng(4)
    y = rng.uniform(-1, 1, 150)
    x = np.clip(0.7 * y + rng.normal(0, 0.3, 150), -1, 1)
    got = iv.bootstrap_interval(iv.ccc_stats(x, y), iv.ccc_of, n_resamples=400, seed=5)
    ref = scipy.stats.bootstrap((x, y), _np_ccc, paired=True, vectorized=False, n_resamples=400, method="BCa",
                                rng=np.random.default_rng(5))
    assert got.low[0] == pytest.approx(ref.confidence_interval.low, abs=1e-10)
    assert got.high[0] == pytest.approx(ref.confidence_interval.high, abs=1e-10)


def test_ccc_skips_images_without_a_target():
    rng = np.random.default_rng(6)
    y, x = rng.uniform(-1, 1, 50), rng.uniform(-1, 1, 50)
    with_gaps = np.concatenate([y, [np.nan] * 10])
    stats = iv.ccc_stats(np.concatenate([x, rng.uniform(-1, 1, 10)]), with_gaps)
    assert iv.ccc_of(stats.sum(0)) == pytest.approx(_np_ccc(x, y), abs=1e-12)


def _clustered(clusters: int = 40, size: int = 25, seed: int = 8):
    """Whole clusters (e.g. videos) are mostly right or mostly wrong: images within one are not independent."""
    rng = np.random.default_rng(seed)
    hard = rng.random(clusters) < 0.3
    ids = np.repeat(np.arange(clusters), size)
    y_true = rng.integers(0, C, clusters * size)
    right = rng.random(clusters * size) < np.where(hard[ids], 0.2, 0.95)
    y_pred = np.where(right, y_true, (y_true + 1) % C)
    return y_true, y_pred, ids


def test_cluster_bootstrap_is_wider_than_the_image_level_one_on_clustered_data():
    y_true, y_pred, ids = _clustered()
    images = _classification(y_true, y_pred, n_resamples=1000, seed=0)
    clusters = _classification(y_true, y_pred, clusters=ids, n_resamples=1000, seed=0)
    assert clusters.units == 40 and images.units == 1000
    widths = clusters.high - clusters.low, images.high - images.low
    assert (widths[0] > 1.5 * widths[1]).all(), widths


def test_cluster_bootstrap_equals_scipy_bootstrap_of_a_ratio_over_clusters():
    y_true, y_pred, ids = _clustered(clusters=30, size=7, seed=9)
    correct = np.bincount(ids, weights=(y_true == y_pred).astype(float))
    sizes = np.bincount(ids).astype(float)
    got = _classification(y_true, y_pred, clusters=ids, n_resamples=500, seed=3)
    ref = scipy.stats.bootstrap((correct, sizes), lambda c, s, axis=-1: c.sum(axis) / s.sum(axis), paired=True,
                                n_resamples=500, method="BCa", rng=np.random.default_rng(3))
    assert got.low[0] == pytest.approx(ref.confidence_interval.low, abs=1e-12)
    assert got.high[0] == pytest.approx(ref.confidence_interval.high, abs=1e-12)


def test_a_constant_statistic_gets_its_value_and_a_single_unit_no_interval():
    y = np.arange(40) % C
    perfect = _classification(y, y, n_resamples=200)
    assert perfect.low.tolist() == [1.0, 1.0, 1.0] and perfect.high.tolist() == [1.0, 1.0, 1.0]
    one = _classification(y, y, clusters=np.zeros(40), n_resamples=200)
    assert one.units == 1 and np.isnan(one.low).all() and np.isnan(one.high).all()


def test_where_bca_is_undefined_the_output_gets_the_percentile_interval_of_the_same_resamples():
    y_true = np.arange(21) % 7  # 3 images per class, all predicted as class 2: every jackknife UAR is 1/7
    y_pred = np.full(21, 2)     # (each class keeps an image), so BCa's acceleration is 0/0

    def value(sums):
        cm = iv.cm_of(sums, 7)
        return np.stack([iv.accuracy(cm), iv.uar(cm), iv.macro_f1(cm)])

    got = iv.bootstrap_interval(iv.classification_stats(y_true, y_pred, 7), value, n_resamples=500, seed=1)
    assert got.methods == ("BCa", "percentile", "BCa") and got.label(["acc", "uar", "f1"]) == "BCa (percentile: uar)"
    ref = scipy.stats.bootstrap((y_true, y_pred), balanced_accuracy_score, paired=True, vectorized=False,
                                n_resamples=500, method="percentile", rng=np.random.default_rng(1))
    assert (got.low[1], got.high[1]) == pytest.approx(tuple(ref.confidence_interval), abs=1e-12)


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="percentile"):
        _classification(*_predictions(20), method="student")
