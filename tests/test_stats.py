"""t5lit.stats against scipy on fixed samples: the t distribution, Welch's t-test, Kendall's tau-b, Spearman's
rho, and the bootstrap intervals (percentile bootstrap against scipy's, the paired bootstrap by construction)."""

import math

import numpy as np
import pytest

from t5lit import stats as S

scipy_stats = pytest.importorskip("scipy.stats")
scipy_special = pytest.importorskip("scipy.special")


@pytest.mark.parametrize("a,b,x", [(0.5, 0.5, 0.3), (2.0, 3.0, 0.7), (10.0, 0.5, 0.95), (1.5, 0.5, 0.01),
                                   (40.0, 0.5, 0.5)])
def test_incomplete_beta_matches_scipy(a, b, x):
    assert S.betainc(a, b, x) == pytest.approx(scipy_special.betainc(a, b, x), rel=1e-10, abs=1e-14)


@pytest.mark.parametrize("t", [-3.5, -0.2, 0.0, 0.7, 2.1, 12.0])
@pytest.mark.parametrize("df", [1, 2.5, 4, 17.3, 200])
def test_t_survival_matches_scipy(t, df):
    assert S.t_sf(t, df) == pytest.approx(scipy_stats.t.sf(t, df), rel=1e-9, abs=1e-15)


SAMPLES = [([80.1, 80.9, 80.4], [79.0, 79.6, 79.1]),
           ([71.2, 70.4, 72.0, 70.9, 71.5], [70.8, 71.9]),
           ([19.24, 19.31, 19.18], [19.20, 19.35, 19.28, 19.22]),
           ([1.0, 2.0], [1.5, 1.6])]


@pytest.mark.parametrize("a,b", SAMPLES)
def test_welch_matches_scipy(a, b):
    ours = S.welch_t_test(a, b)
    ref = scipy_stats.ttest_ind(a, b, equal_var=False)
    assert ours.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert ours.p == pytest.approx(ref.pvalue, rel=1e-9)
    assert ours.diff == pytest.approx(np.mean(a) - np.mean(b))
    assert ours.significant == (ref.pvalue < 0.05)


def test_welch_needs_two_seeds_and_variance():
    with pytest.raises(ValueError, match="at least 2 values"):
        S.welch_t_test([1.0], [1.0, 2.0])
    same = S.welch_t_test([1.0, 1.0], [2.0, 2.0])
    assert math.isnan(same.p) and not same.significant and same.diff == -1.0


@pytest.mark.parametrize("seed", range(4))
def test_rank_correlations_match_scipy(seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 6, 9).astype(float)  # ties on purpose
    y = x + rng.normal(0, 2, 9).round()
    assert S.kendall_tau(x, y) == pytest.approx(scipy_stats.kendalltau(x, y).statistic, rel=1e-12)
    assert S.spearman_rho(x, y) == pytest.approx(scipy_stats.spearmanr(x, y).statistic, rel=1e-12)
    assert S.kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    assert S.kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0 and S.spearman_rho([1, 2, 3], [3, 2, 1]) == -1.0
    assert math.isnan(S.kendall_tau([1, 1], [1, 2])) and math.isnan(S.spearman_rho([5], [3]))


def test_percentile_bootstrap_matches_scipy():
    a = np.array([80.1, 80.9, 80.4, 81.3, 79.8, 80.6])
    b = np.array([79.0, 79.6, 79.1, 79.9, 78.7])
    low, high = S.bootstrap_mean_difference(a, b, n_samples=20_000, seed=1)
    ref = scipy_stats.bootstrap((a, b), lambda x, y, axis=-1: x.mean(axis) - y.mean(axis), method="percentile",
                                n_resamples=20_000, random_state=np.random.default_rng(2)).confidence_interval
    assert low == pytest.approx(ref.low, abs=0.06) and high == pytest.approx(ref.high, abs=0.06)
    assert low < a.mean() - b.mean() < high
    assert S.bootstrap_mean_difference(a, b, seed=3) == S.bootstrap_mean_difference(a, b, seed=3)  # seeded


def test_paired_bootstrap():
    rng = np.random.default_rng(0)
    a = (rng.random(400) < 0.75).astype(float)  # per-example correctness of two systems on the same examples
    b = np.where(rng.random(400) < 0.9, a, 1 - a)  # mostly the same answers
    b[:30] = 0.0  # ... but b misses 30 that a may get right

    def score(values):
        return lambda draw: 100 * float(values.mean() if draw is None else values[draw["t"]].mean())

    r = S.paired_bootstrap(score(a), score(b), {"t": 400}, seed=0)
    assert r.diff == pytest.approx(100 * (a.mean() - b.mean())) and r.low <= r.diff <= r.high
    same = S.paired_bootstrap(score(a), score(a), {"t": 400})
    assert same.diff == 0.0 and same.p == 1.0 and not same.significant and same.low == same.high == 0.0
    # A paired difference is seen more sharply than the unpaired one: the interval is narrower.
    unpaired = S.bootstrap_mean_difference(100 * a, 100 * b)
    assert r.high - r.low < unpaired[1] - unpaired[0]
    assert S.bootstrap_p(np.array([1.0, 2.0, 3.0, -1.0])) == 0.5 and S.bootstrap_p(np.ones(10)) == 0.0
