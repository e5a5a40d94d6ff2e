"""Mixing rates (paper Section 3.5.2) against hand-computed values, the sampler, and name lookup."""

from collections import Counter

import pytest

from t5lit.data.mixtures import MIXTURES, Mixture, get_task_or_mixture, mixture_rates, sample_task_sequence
from t5lit.registry import ConfigError

COUNTS = {"big": 1000, "mid": 300, "small": 100}


def test_examples_proportional_with_limit():
    assert mixture_rates("examples_proportional", COUNTS) == pytest.approx({"big": 10 / 14, "mid": 3 / 14,
                                                                            "small": 1 / 14})
    # K = 300: min(1000, 300) = 300 -> 300 / 700, 300 / 700, 100 / 700.
    assert mixture_rates("examples_proportional", COUNTS, limit=300) == pytest.approx(
        {"big": 3 / 7, "mid": 3 / 7, "small": 1 / 7})


def test_temperature_and_equal():
    t1 = mixture_rates("temperature", COUNTS, limit=300, temperature=1.0)
    assert t1 == pytest.approx(mixture_rates("examples_proportional", COUNTS, limit=300))
    # T = 2 on (3/7, 3/7, 1/7): square roots sqrt(3), sqrt(3), 1 over their sum.
    s = 2 * 3**0.5 + 1
    assert mixture_rates("temperature", COUNTS, limit=300, temperature=2.0) == pytest.approx(
        {"big": 3**0.5 / s, "mid": 3**0.5 / s, "small": 1 / s})
    assert mixture_rates("equal", COUNTS) == pytest.approx({"big": 1 / 3, "mid": 1 / 3, "small": 1 / 3})
    mix = Mixture("m", ("big", "small"), rate="temperature", limit=500, temperature=2.0)
    assert mixture_rates(mix, {"big": 1000, "small": 125}) == pytest.approx({"big": 2 / 3, "small": 1 / 3})


def test_rate_errors_are_one_line():
    with pytest.raises(ConfigError, match="task 'small' has no training examples"):
        mixture_rates("examples_proportional", {"big": 10, "small": 0})
    with pytest.raises(ConfigError, match="task 'small' has no training examples"):
        mixture_rates("equal", {"big": 10, "small": 0})
    with pytest.raises(ConfigError, match="did you mean 'temperature'"):
        mixture_rates("temprature", COUNTS)
    with pytest.raises(ConfigError, match="temperature must be positive"):
        mixture_rates("temperature", COUNTS, temperature=0)


def test_sampler_is_deterministic_and_follows_rates():
    rates = {"a": 0.7, "b": 0.2, "c": 0.1}
    seq = sample_task_sequence(rates, 5000, seed=(3, 1))
    assert seq == sample_task_sequence(rates, 5000, seed=(3, 1))
    assert seq != sample_task_sequence(rates, 5000, seed=(3, 2))
    counts = Counter(seq)
    assert abs(counts["a"] / 5000 - 0.7) < 0.03 and abs(counts["c"] / 5000 - 0.1) < 0.02
    assert sample_task_sequence({"a": 1.0, "b": 0.0}, 50, seed=0) == ["a"] * 50


def test_registered_mixtures_and_lookup():
    glue = [t.name for t in get_task_or_mixture("glue")]
    assert glue == ["glue_cola", "glue_sst2", "glue_mrpc", "glue_qqp", "glue_stsb", "glue_mnli", "glue_qnli",
                    "glue_rte"]  # no WNLI, no ax
    assert "super_glue_wsc" in MIXTURES.get("super_glue").tasks and len(MIXTURES.get("super_glue").tasks) == 8
    assert [t.name for t in get_task_or_mixture("glue_rte")] == ["glue_rte"]
    with pytest.raises(ConfigError, match="unknown task or mixture 'super_glu'; did you mean 'super_glue'"):
        get_task_or_mixture("super_glu")
