"""Statistics for comparing runs: Welch's t-test, bootstrap confidence intervals, the paired bootstrap over
evaluation examples, and rank agreement (Kendall's tau, Spearman's rho). NumPy only (no scipy at run time);
tests/test_stats.py checks each against scipy.

Two ways to ask "is row A better than row B?", as the sweep report uses them:

- several seeds per row: Welch's t-test on the per-seed scores (unequal variances), and a bootstrap
  confidence interval of the difference of the means (seeds resampled within each row);
- one seed: the paired bootstrap over the evaluation examples (Koehn 2004): both runs scored the same
  examples, so each resample draws one set of example indices and recomputes both runs' scores on it.

    >>> welch_t_test([80.1, 80.9, 80.4], [79.0, 79.6, 79.1]).p < 0.05
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05  # two-sided significance level of every test here
CONFIDENCE = 0.95
BOOTSTRAP_SAMPLES = 1000


# ------------------------------------------------------------------------------------- distributions
def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz's method)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))  # even step
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))  # odd step
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) (scipy.special.betainc)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` (possibly fractional) degrees of freedom (scipy.stats.t.sf)."""
    if math.isnan(t) or df <= 0:
        return math.nan
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))  # P(T > |t|)
    return tail if t > 0 else 1.0 - tail


# ------------------------------------------------------------------------------------- tests
@dataclass(frozen=True)
class Comparison:
    """A two-sided test of a difference (first minus second): its statistic, p-value and a confidence interval
    of the difference. ``p`` is NaN where the test is undefined (no variance at all)."""

    diff: float
    p: float
    low: float = math.nan
    high: float = math.nan
    statistic: float = math.nan
    df: float = math.nan

    @property
    def significant(self) -> bool:
        return not math.isnan(self.p) and self.p < ALPHA


def welch_t_test(a: Sequence[float], b: Sequence[float]) -> Comparison:
    """Welch's unequal-variances t-test of mean(a) - mean(b) (scipy.stats.ttest_ind(equal_var=False)).

    Both samples need at least two values. Two samples without any variance give p = NaN (the test is
    undefined; scipy gives NaN as well)."""
    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"Welch's t-test needs at least 2 values per sample, got {len(x)} and {len(y)}")
    va, vb = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    diff = float(x.mean() - y.mean())
    if va + vb == 0:
        return Comparison(diff, math.nan)
    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(x) - 1) + vb**2 / (len(y) - 1))
    return Comparison(diff, min(1.0, 2.0 * t_sf(abs(t), df)), statistic=t, df=df)


def percentile_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The central ``confidence`` interval of bootstrap ``values`` (percentile method, linear interpolation)."""
    delta = 100 * (1 - confidence) / 2
    low, high = np.percentile(np.asarray(values, np.float64), [delta, 100 - delta])
    return float(low), float(high)


def bootstrap_p(deltas: np.ndarray) -> float:
    """Two-sided p-value of "the difference is 0" from bootstrap differences: twice the share on the far side
    of zero (ties count half), at most 1."""
    d = np.asarray(deltas, np.float64)
    below, above = float(np.mean(d < 0) + 0.5 * np.mean(d == 0)), float(np.mean(d > 0) + 0.5 * np.mean(d == 0))
    return min(1.0, 2.0 * min(below, above))


def bootstrap_mean_difference(a: Sequence[float], b: Sequence[float], n_samples: int = BOOTSTRAP_SAMPLES,
                              seed: int = 0, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """A percentile bootstrap interval of mean(a) - mean(b), each sample resampled with replacement on its own
    (the seeds of two rows are independent runs)."""
    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    rng = np.random.default_rng(seed)
    ia = rng.integers(0, len(x), size=(n_samples, len(x)))
    ib = rng.integers(0, len(y), size=(n_samples, len(y)))
    return percentile_interval(x[ia].mean(axis=1) - y[ib].mean(axis=1), confidence)


def seeds_test(a: Sequence[float], b: Sequence[float], seed: int = 0) -> Comparison:
    """Welch's t-test with a bootstrap confidence interval of the difference: rows with several seeds."""
    t = welch_t_test(a, b)
    low, high = bootstrap_mean_difference(a, b, seed=seed)
    return Comparison(t.diff, t.p, low, high, t.statistic, t.df)


def bootstrap_draws(sizes: Mapping[str, int], n_samples: int = BOOTSTRAP_SAMPLES,
                    seed: int = 0) -> list[dict[str, np.ndarray]]:
    """``n_samples`` resamples of evaluation sets of ``sizes`` examples (set -> that many indices drawn with
    replacement); the same ``sizes`` and ``seed`` give the same draws, so runs scored apart stay paired."""
    rng = np.random.default_rng(seed)
    return [{name: rng.integers(0, n, size=n) for name, n in sizes.items()} for _ in range(n_samples)]


def paired_difference(a: Sequence[float], b: Sequence[float], diff: float,
                      confidence: float = CONFIDENCE) -> Comparison:
    """The paired bootstrap's verdict from two runs' scores on the same resamples (``a[i]`` and ``b[i]`` on
    draw i) and their observed difference ``diff``: the percentile interval of a - b and its p-value."""
    deltas = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    low, high = percentile_interval(deltas, confidence)
    return Comparison(float(diff), bootstrap_p(deltas), low, high)


def paired_bootstrap(score_a: Callable[[Mapping[str, np.ndarray] | None], float],
                     score_b: Callable[[Mapping[str, np.ndarray] | None], float], sizes: Mapping[str, int],
                     n_samples: int = BOOTSTRAP_SAMPLES, seed: int = 0,
                     confidence: float = CONFIDENCE) -> Comparison:
    """The paired bootstrap over evaluation examples of score_a - score_b (Koehn 2004).

    ``sizes`` gives the number of examples of each evaluation set (a task); each resample draws, per set,
    that many indices with replacement, and both scores are computed on the same draw (a mapping set ->
    indices). ``score_x(None)`` is the score on the examples as they are.
    """
    draws = bootstrap_draws(sizes, n_samples, seed)
    return paired_difference([score_a(d) for d in draws], [score_b(d) for d in draws],
                             score_a(None) - score_b(None), confidence)


# ------------------------------------------------------------------------------------- rank agreement
def average_ranks(x: Sequence[float]) -> np.ndarray:
    """Ranks 1..n with ties given their mean rank (scipy's ``rankdata(method="average")``).

    ``average_ranks([10, 30, 10]) -> [1.5, 3.0, 1.5]``: a run of equal values sorted to positions i..j (1-based)
    each gets (i + j) / 2.
    """
    x = np.asarray(x)
    order = np.argsort(x, kind="mergesort")
    position = np.empty(len(x), np.int64)
    position[order] = np.arange(len(x))
    sorted_x = x[order]
    starts = np.r_[True, sorted_x[1:] != sorted_x[:-1]] if len(x) else np.zeros(0, bool)
    run = np.cumsum(starts)[position] - 1  # each value's run of equal values, in sorted order
    edges = np.r_[np.flatnonzero(starts), len(x)]  # run r covers sorted positions edges[r] .. edges[r+1]-1
    return (edges[run] + edges[run + 1] + 1) / 2.0


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson's r; NaN when either side is constant (or fewer than two values)."""
    a, b = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(a) < 2:
        return math.nan
    a, b = a - a.mean(), b - b.mean()
    denom = math.sqrt(float(a @ a) * float(b @ b))
    return math.nan if denom == 0 else float(a @ b) / denom


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho (Pearson's r of the average ranks; scipy.stats.spearmanr); NaN when undefined."""
    return pearson(average_ranks(x), average_ranks(y))


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b, which accounts for ties (scipy.stats.kendalltau); NaN when undefined.

    ``kendall_tau([1, 2, 3], [1, 3, 2]) == 1/3``: of three pairs, two are ordered alike and one is not.
    """
    a, b = np.asarray(x, np.float64), np.asarray(y, np.float64)
    n = len(a)
    concordant = discordant = ties_a = ties_b = 0
    for i in range(n):
        da, db = np.sign(a[i + 1:] - a[i]), np.sign(b[i + 1:] - b[i])
        prod = da * db
        concordant += int(np.sum(prod > 0))
        discordant += int(np.sum(prod < 0))
        ties_a += int(np.sum(da == 0))
        ties_b += int(np.sum(db == 0))
    pairs = n * (n - 1) // 2
    denom = math.sqrt((pairs - ties_a) * (pairs - ties_b))
    return math.nan if denom == 0 else (concordant - discordant) / denom


def sign(x: float, tolerance: float = 0.0) -> int:
    """-1, 0 or 1; |x| <= tolerance counts as 0 (a tie)."""
    return 0 if abs(x) <= tolerance else (1 if x > 0 else -1)
