"""Mixing rates (paper Section 3.5.2) against hand-computed values, the sampler, and name lookup."""

import math
from collections import Counter

import pytest

from t5lit.data.mixtures import (
    MIXTURES,
    UNSUPERVISED,
    Mixture,
    get_task_or_mixture,
    leave_out,
    mixture_members,
    mixture_rates,
    sample_task_sequence,
    task_names,
)
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
    sglue = MIXTURES.get("super_glue").tasks  # the eight tasks, and DPR as the paper adds it (Section 2.3)
    assert "super_glue_wsc" in sglue and len(sglue) == 9 and sglue[-1] == "dpr"
    assert [t.name for t in get_task_or_mixture("glue_rte")] == ["glue_rte"]
    with pytest.raises(ConfigError, match="unknown task or mixture 'super_glu'; did you mean 'super_glue'"):
        get_task_or_mixture("super_glu")


# ---------------------------------------------------------------------------------------------- Table 11
# Sizes of the study's supervised training sets (T5's glue_utils weights; CNN/DM, SQuAD, WMT as on the hub).
SIZES = {"glue_cola": 8_551, "glue_sst2": 67_349, "glue_mrpc": 3_668, "glue_qqp": 363_849, "glue_stsb": 5_749,
         "glue_mnli": 392_702, "glue_qnli": 104_743, "glue_rte": 2_490, "super_glue_boolq": 9_427, "super_glue_cb": 250,
         "super_glue_copa": 400, "super_glue_multirc": 27_243, "super_glue_record": 138_854, "super_glue_rte": 2_490,
         "super_glue_wic": 5_428, "super_glue_wsc": 259, "dpr": 1_322, "cnn_dailymail": 287_113, "squad": 87_599,
         "wmt14_ende": 4_508_785, "wmt14_enfr": 40_836_876, "wmt16_enro": 610_320}


def formula(method: str, counts: dict, limit, temperature: float = 1.0) -> dict:
    """Section 3.5.2 written out by hand: r_m = min(e_m, K) / sum_n min(e_n, K), each ^(1/T) renormalised."""
    if method == "equal":
        return {t: 1 / len(counts) for t in counts}
    capped = {t: min(n, limit) for t, n in counts.items()}
    powered = {t: (c / sum(capped.values())) ** (1 / temperature) for t, c in capped.items()}
    return {t: p / sum(powered.values()) for t, p in powered.items()}


TABLE_11 = [("equal", None, 1.0)] + [("examples_proportional", 2**k, 1.0) for k in range(16, 22)] + [
    ("temperature", 2**21, t) for t in (2.0, 4.0, 8.0)]


def test_the_study_mixture_has_every_supervised_task_once():
    from t5lit import schema

    assert schema.UNSUPERVISED == UNSUPERVISED  # the schema names the member without importing the data code
    names = task_names("supervised")
    assert sorted(names) == sorted(SIZES) and len(names) == len(set(names)) == 22
    assert "glue_ax" not in names and "glue_wnli" not in names and "super_glue_axb" not in names
    assert task_names("multi_task") == names + [UNSUPERVISED]
    tasks, unsupervised = mixture_members(["multi_task"])
    assert [t.name for t in tasks] == names and unsupervised
    assert [t.name for t in get_task_or_mixture("multi_task")] == names  # the member is no Task: never scored
    assert get_task_or_mixture(UNSUPERVISED) == []


@pytest.mark.parametrize("method, limit, temperature", TABLE_11)
def test_empirical_rates_over_many_draws_match_the_formula(method, limit, temperature):
    """Every row of Table 11 on the study's task sizes: the rates equal the paper's formula, and 200,000 draws
    of the sampler land within 4 standard errors of each rate (and their mean error is small)."""
    expected = formula(method, SIZES, limit, temperature)
    rates = mixture_rates(method, SIZES, limit=limit, temperature=temperature)
    assert rates == pytest.approx(expected, rel=1e-12, abs=1e-15)
    n = 200_000
    counts = Counter(sample_task_sequence(rates, n, seed=(7, int(temperature), limit or 0)))
    for task, p in expected.items():
        tolerance = 4 * math.sqrt(p * (1 - p) / n) + 1e-9
        assert abs(counts[task] / n - p) <= tolerance, (task, counts[task] / n, p)


def test_the_unsupervised_member_counts_k_or_its_size():
    counts = {"glue_rte": 2_490, "squad": 87_599, UNSUPERVISED: math.inf}
    k = 2**19
    assert mixture_rates("examples_proportional", counts, limit=k) == pytest.approx(
        {"glue_rte": 2_490 / (2_490 + 87_599 + k), "squad": 87_599 / (2_490 + 87_599 + k),
         UNSUPERVISED: k / (2_490 + 87_599 + k)})  # "orders of magnitude larger": min(inf, K) = K
    sized = mixture_rates("examples_proportional", {**counts, UNSUPERVISED: 710_000}, limit=None)
    assert sized[UNSUPERVISED] == pytest.approx(710_000 / (710_000 + 2_490 + 87_599))  # Section 3.7's sizes
    assert mixture_rates("equal", counts)[UNSUPERVISED] == pytest.approx(1 / 3)
    with pytest.raises(ConfigError, match="'unsupervised' has no size: examples_proportional mixing needs a limit K"):
        mixture_rates("examples_proportional", counts)


def test_leave_one_out_takes_a_task_or_a_benchmark_out():
    entries = ["glue", "super_glue", "squad", "wmt16_enro"]
    assert leave_out(entries, ["glue"]) == ["super_glue", "squad", "wmt16_enro"]
    assert leave_out(entries, ["squad"]) == ["glue", "super_glue", "wmt16_enro"]
    out = leave_out(entries, ["glue_rte"])  # one task of a mixture: the rest of the mixture stays
    assert "glue_rte" not in out and "glue_mnli" in out and out[-3:] == ["super_glue", "squad", "wmt16_enro"]
    with pytest.raises(ConfigError) as err:
        leave_out(entries, ["cnn_dailymail"])
    assert str(err.value) == ("leave_out 'cnn_dailymail' is not in the mixture glue, super_glue, squad, wmt16_enro; "
                              "leave-one-out leaves out one of the tasks trained together")
    with pytest.raises(ConfigError, match="leaves no supervised task"):
        leave_out(["squad", UNSUPERVISED], ["squad"])


def test_mixture_errors_are_one_line():
    with pytest.raises(ConfigError, match="unknown task or mixture 'glue_rtee'; did you mean 'glue_rte'"):
        task_names("glue_rtee")
    with pytest.raises(ConfigError, match="temperature must be positive, got -1"):
        mixture_rates("temperature", COUNTS, temperature=-1)
    MIXTURES.add("broken_mix", Mixture("broken_mix", ("glue", "no_such_task")))
    try:
        with pytest.raises(ConfigError, match="mixture 'broken_mix' names 'no_such_task', which is no task"):
            task_names("broken_mix")
    finally:
        MIXTURES._items.pop("broken_mix")
