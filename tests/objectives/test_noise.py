"""Noise masks: golden arrays for fixed seeds, exact counts, and the distribution of random segmentation."""

import numpy as np
import pytest

from t5lit.objectives.base import ConfigError
from t5lit.objectives.noise import (
    cut_points,
    iid_noise_mask,
    mask_from_bounds,
    random_prefix_noise_mask,
    random_segmentation,
    random_spans_bounds,
    random_spans_counts,
    random_spans_noise_mask,
    regular_noise_mask,
)

T, F = True, False


def rng(seed=0):
    return np.random.default_rng(seed)


def test_golden_masks():
    assert iid_noise_mask(6, 0.5, rng()).tolist() == [F, T, T, T, F, F]
    assert random_spans_noise_mask(10, 0.3, rng(), 1.5).tolist() == [F, F, T, T, F, F, F, F, F, T]
    assert random_prefix_noise_mask(5, 0.5, rng()).tolist() == [T, T, T, T, F]
    assert regular_noise_mask(12, 0.25, rng(), 2, 2).tolist() == [F, F, T, T, F, F, F, F, F, F, T, T]
    assert random_segmentation(10, 3, rng()).tolist() == [3, 1, 6]
    assert cut_points(np.array([0.9, 0.1, 0.5, 0.3]), 2).tolist() == [2, 4]
    assert mask_from_bounds(6, np.array([1, 4]), np.array([3, 6])).tolist() == [F, T, T, F, T, T]


def test_random_spans_counts_follow_t5():
    assert random_spans_counts(568, 0.15, 3.0) == (85, 28)
    assert random_spans_counts(10, 0.01, 3.0) == (1, 1)  # at least one noise token and one span
    assert random_spans_counts(10, 0.99, 1.0) == (9, 1)  # at most length - 1 noise; spans <= non-noise tokens
    assert random_spans_counts(1, 0.5, 3.0) == (1, 1)  # length 1 counts as 2


@pytest.mark.parametrize("length,density,mean", [(568, 0.15, 3.0), (100, 0.5, 2.0), (37, 0.25, 10.0), (2, 0.5, 3.0)])
def test_random_spans_mask_structure(length, density, mean):
    num_noise, num_spans = random_spans_counts(length, density, mean)
    for seed in range(5):
        mask = random_spans_noise_mask(length, density, rng(seed), mean)
        assert mask.dtype == np.bool_ and mask.shape == (length,)
        assert mask.sum() == num_noise
        assert not mask[0] and mask[-1]  # starts with non-noise, ends with noise
        runs = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(int)])) == 1)
        assert len(runs) == num_spans
        starts, ends = random_spans_bounds(length, density, rng(seed), mean)
        assert starts.tolist() == runs.tolist() and (ends - starts).sum() == num_noise


def test_length_one_mask_is_clean():
    assert random_spans_noise_mask(1, 0.15, rng()).tolist() == [F]
    assert random_prefix_noise_mask(1, 0.5, rng()).tolist() == [F]


def test_random_segmentation_is_uniform():
    # 4 items in 2 segments: [1, 3], [2, 2], [3, 1] equally likely, as T5's shuffle of the gap indicators.
    r = rng(1)
    counts = {}
    for _ in range(3000):
        key = tuple(random_segmentation(4, 2, r).tolist())
        counts[key] = counts.get(key, 0) + 1
    assert set(counts) == {(1, 3), (2, 2), (3, 1)}
    assert all(abs(c - 1000) < 100 for c in counts.values())


def test_random_spans_positions_spread_over_the_chunk():
    # Every position but the first can be noise, the last always is (runs end with noise), and in between
    # the rate is flat, a little under the density since the last position takes its share.
    hits = np.zeros(60)
    for seed in range(2000):
        hits += random_spans_noise_mask(60, 0.2, rng(seed), 3.0)
    rate = hits / 2000
    assert rate[0] == 0 and rate[-1] == 1
    assert np.all(np.abs(rate[10:50] - 0.17) < 0.03)


def test_cut_points_tie_falls_back_to_a_stable_order():
    assert cut_points(np.array([0.5, 0.5, 0.5, 0.1]), 2).tolist() == [1, 4]
    assert cut_points(np.array([0.3]), 0).tolist() == []


def test_prefix_mask_density_range():
    lengths = [random_prefix_noise_mask(101, 0.25, rng(s)).sum() for s in range(500)]
    assert min(lengths) >= 50 and max(lengths) <= 100  # prefix in [round(0.5 * 100), 100]
    with pytest.raises(ConfigError, match="noise_density in"):
        random_prefix_noise_mask(10, 0.7, rng())
