"""Metrics against scipy.stats (a test-only dependency) on random and tied data."""

from __future__ import annotations

import numpy as np
import pytest

scipy_stats = pytest.importorskip("scipy.stats")

from deltaiqa_lite.validate import metrics  # noqa: E402


def _datasets():
    """Random continuous, LDCTIQAC-like tied (0.2 steps vs classes), and heavily tied pairs."""
    rng = np.random.default_rng(7)
    sets = []
    for n in (2, 3, 10, 57, 400, 2000):
        x = rng.normal(size=n)
        sets.append(("continuous", x, 0.6 * x + rng.normal(size=n)))
        sets.append(("likert-vs-mean", rng.integers(0, 5, n).astype(float),
                     rng.integers(0, 21, n) * 0.2))
        sets.append(("few-levels", rng.integers(0, 3, n).astype(float),
                     np.round(rng.normal(size=n), 1)))
    # Perfect and inverted order with ties on both sides.
    base = np.array([0, 0, 1, 1, 1, 2, 3, 3, 4, 4], dtype=float)
    sets.append(("monotone-tied", base, base * 0.8 + 0.2))
    sets.append(("inverted-tied", base, -base))
    return sets


DATASETS = _datasets()


@pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")
@pytest.mark.parametrize("kind,x,y", DATASETS, ids=[f"{d[0]}-{d[1].size}" for d in DATASETS])
def test_correlations_equal_scipy(kind, x, y):
    assert metrics.plcc(x, y) == pytest.approx(scipy_stats.pearsonr(x, y).statistic, abs=1e-9, nan_ok=True)
    assert metrics.srocc(x, y) == pytest.approx(scipy_stats.spearmanr(x, y).statistic, abs=1e-9, nan_ok=True)
    assert metrics.krocc(x, y) == pytest.approx(scipy_stats.kendalltau(x, y).statistic, abs=1e-9, nan_ok=True)


def test_kendall_is_tau_b_not_tau_a_on_ties():
    x = np.array([1, 1, 2, 3], dtype=float)
    y = np.array([1, 2, 2, 3], dtype=float)
    # concordant 4, discordant 0, one tie in x only, one in y only: tau-b = 4/5, tau-a = 4/6.
    assert metrics.krocc(x, y) == pytest.approx(0.8, abs=1e-12)


def test_rankdata_averages_ties_like_scipy():
    values = np.array([3.0, 1.0, 3.0, 2.0, 3.0, 1.0])
    np.testing.assert_array_equal(metrics.rankdata(values), scipy_stats.rankdata(values))
    assert metrics.rankdata(values).tolist() == [5.0, 1.5, 5.0, 3.0, 5.0, 1.5]


def test_constant_input_gives_nan_like_scipy():
    x = np.ones(6)
    y = np.arange(6.0)
    assert np.isnan(metrics.plcc(x, y))
    assert np.isnan(metrics.srocc(x, y))
    assert np.isnan(metrics.krocc(x, y))


def test_mismatched_or_non_finite_input_is_refused():
    with pytest.raises(ValueError, match="differ in length"):
        metrics.plcc([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="finite"):
        metrics.krocc([1, np.nan, 3], [1, 2, 3])


def test_likert_class_rounds_half_up_and_clips():
    scores = np.array([-0.3, 0.49, 0.5, 1.5, 2.5, 2.4999999999, 3.5, 3.9, 4.6])
    assert metrics.likert_class(scores).tolist() == [0, 0, 1, 2, 3, 3, 4, 4, 4]
    # LDCTIQAC levels: multiples of 0.2 as parsed from JSON.
    levels = np.array([0.0, 0.2, 0.4, 0.6, 0.8, 1.4, 1.6, 2.4, 2.6, 3.4, 3.6, 4.0])
    assert metrics.likert_class(levels).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 4, 4]


def test_confusion_matrix_and_precision_recall():
    true = np.array([0, 0, 1, 2, 2, 2, 4])
    pred = np.array([0, 1, 1, 2, 2, 3, 4])
    matrix = metrics.confusion_matrix(true, pred)
    expected = np.zeros((5, 5), dtype=np.int64)
    for t, p in zip(true, pred):
        expected[t, p] += 1
    np.testing.assert_array_equal(matrix, expected)
    precision, recall = metrics.precision_recall(matrix)
    np.testing.assert_allclose(precision[[0, 1, 2, 4]], [1.0, 0.5, 1.0, 1.0])
    assert precision[3] == 0.0  # predicted once, never right
    np.testing.assert_allclose(recall[[0, 1, 2, 4]], [0.5, 1.0, 2 / 3, 1.0])
    assert np.isnan(recall[3])  # class 3 never occurs in the reference
    with pytest.raises(ValueError, match="0..4"):
        metrics.confusion_matrix([5], [0])


def test_agreement_figures():
    labels = np.array([0.0, 0.8, 1.4, 2.0, 2.6, 3.2, 4.0, 3.8])
    scores = np.array([0.3, 1.2, 1.3, 2.6, 2.4, 3.0, 3.7, 2.4])
    argmax = np.array([0, 1, 1, 3, 2, 3, 4, 2])
    result = metrics.agreement(scores, labels, predicted_classes=argmax, resamples=0)
    assert result.n == 8
    assert result.plcc == pytest.approx(scipy_stats.pearsonr(scores, labels).statistic, abs=1e-12)
    assert result.correlation_sum == pytest.approx(result.plcc + result.srocc + result.krocc)
    # rounded: scores 0 1 1 3 2 3 4 2, labels 0 1 1 2 3 3 4 4 -> 5 of 8 agree
    assert result.accuracy == pytest.approx(5 / 8)
    assert result.argmax_accuracy == pytest.approx(5 / 8)
    assert result.mae == pytest.approx(np.mean(np.abs(scores - labels)))
    assert result.confusion.sum() == 8
    assert result.confusion[4, 2] == 1 and result.confusion[2, 3] == 1
    assert result.intervals == {}


def test_bootstrap_intervals_are_reproducible_and_bracket_the_estimate():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 21, 300) * 0.2
    scores = np.clip(labels + rng.normal(scale=0.6, size=300), 0, 4)
    first = metrics.bootstrap_intervals(scores, labels, resamples=300, seed=11)
    second = metrics.bootstrap_intervals(scores, labels, resamples=300, seed=11)
    other = metrics.bootstrap_intervals(scores, labels, resamples=300, seed=12)
    assert first == second
    assert first != other
    point = metrics.agreement(scores, labels, resamples=0)
    for name in metrics.SCALAR_METRICS:
        interval = first[name]
        assert interval.low < getattr(point, name) < interval.high, name
        assert interval.high - interval.low < 0.25, name


def test_bootstrap_skips_undefined_resamples():
    # Two slices: about half the resamples draw the same slice twice (constant input).
    intervals = metrics.bootstrap_intervals([1.0, 2.0], [1.0, 3.0], resamples=50, seed=0)
    assert intervals["plcc"].low == pytest.approx(1.0)
    assert intervals["mae"].low == pytest.approx(0.0)
    assert intervals["mae"].high == pytest.approx(1.0)
