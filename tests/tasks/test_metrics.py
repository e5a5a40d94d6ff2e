"""t5lit.metrics against reference implementations (sklearn, scipy, sacrebleu, rouge-score) and hand values."""

import math

import numpy as np
import pytest

from t5lit import metrics as M

sklearn_metrics = pytest.importorskip("sklearn.metrics")
scipy_stats = pytest.importorskip("scipy.stats")


def _labels(seed, n, classes, invalid_share=0.1):
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, classes, n)
    preds = np.where(rng.random(n) < 0.6, targets, rng.integers(0, classes, n))
    preds = np.where(rng.random(n) < invalid_share, -1, preds)
    return targets.tolist(), preds.tolist()


@pytest.mark.parametrize("seed", range(4))
def test_classification_metrics_match_sklearn(seed):
    t, p = _labels(seed, 50, 2)
    assert M.accuracy(t, p)["accuracy"] == pytest.approx(100 * sklearn_metrics.accuracy_score(t, p))
    flipped = [1 - ti if pi not in (0, 1) else pi for ti, pi in zip(t, p)]  # invalid -> opposite of target
    assert M.f1_with_invalid(t, p)["f1"] == pytest.approx(100 * sklearn_metrics.f1_score(t, flipped))
    assert M.matthews_corrcoef(t, p)["mcc"] == pytest.approx(100 * sklearn_metrics.matthews_corrcoef(t, p))
    t3, p3 = _labels(seed + 10, 40, 3)
    expected = sklearn_metrics.f1_score(t3, p3, labels=[0, 1, 2], average="macro", zero_division=0)
    assert M.mean_multiclass_f1(3)(t3, p3)["f1"] == pytest.approx(100 * expected)


def test_degenerate_cases_follow_sklearn():
    assert M.matthews_corrcoef([1, 1, 1], [1, 1, 1])["mcc"] == 0.0  # one class only: undefined -> 0
    assert M.matthews_corrcoef([0, 1, 1], [1, 1, 1])["mcc"] == 0.0
    assert M.f1_with_invalid([0, 0], [0, 0])["f1"] == 0.0
    assert M.f1_with_invalid([1, 0], [-1, -1])["f1"] == 0.0  # invalid: a miss and a false alarm
    # class 2 never occurs and is never predicted: its F1 of 0 still counts in the macro mean (sklearn's).
    assert M.mean_multiclass_f1(3)([0, 1], [0, 1])["f1"] == pytest.approx(200 / 3)


@pytest.mark.parametrize("seed", range(3))
def test_correlations_match_scipy(seed):
    rng = np.random.default_rng(seed)
    t = np.round(rng.uniform(0, 5, 60) * 5) / 5  # many ties, like STS-B targets
    p = np.clip(t + rng.normal(0, 1, 60), 0, 5).round(1)
    p[:5] = -1.0  # unparsable predictions
    out = M.pearson_spearman(t.tolist(), p.tolist())
    assert out["pearson"] == pytest.approx(100 * scipy_stats.pearsonr(t, p)[0])
    assert out["spearman"] == pytest.approx(100 * scipy_stats.spearmanr(t, p)[0])
    assert M.pearson_spearman([1.0, 2.0], [3.0, 3.0]) == {"pearson": 0.0, "spearman": 0.0}  # constant: 0, not NaN


def test_squad_official_definitions():
    assert M.normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert M.normalize_answer("an apple, a pear") == "apple pear"
    out = M.squad([["Denver Broncos", "Broncos"]], ["the Broncos"])
    assert out == {"exact_match": 100.0, "f1": 100.0}
    # "Broncos won" vs "Denver Broncos": 1 common token, precision 1/2, recall 1/2 -> F1 0.5.
    out = M.squad([["Denver Broncos"], ["Paris"]], ["Broncos won", ""])
    assert out["exact_match"] == 0.0 and out["f1"] == pytest.approx(25.0)


def test_multirc_f1a_and_exact_match():
    groups = [(0, 0), (0, 0), (0, 1), (1, 0)]
    targets = [{"value": v, "group": g} for v, g in zip([1, 0, 1, 1], groups)]
    preds = [{"value": v, "group": g} for v, g in zip([1, 0, 0, -1], groups)]
    out = M.multirc_f1_em(targets, preds)
    assert out["exact_match"] == pytest.approx(100 / 3)  # only question (0, 0) is all right
    assert out["f1"] == pytest.approx(100 * sklearn_metrics.f1_score([1, 0, 1, 1], [1, 0, 0, 0]))


def test_bleu_matches_sacrebleu():
    import sacrebleu

    refs = ["Das ist ein kleiner Test.", "Der Hund läuft schnell nach Hause.", "Guten Morgen!"]
    hyps = ["Das ist ein Test.", "Der Hund läuft nach Hause.", "Guten Abend!"]
    reference = sacrebleu.metrics.BLEU(tokenize="intl", smooth_method="exp", lowercase=False)
    assert M.bleu(refs, hyps)["bleu"] == pytest.approx(reference.corpus_score(hyps, [refs]).score)
    assert M.bleu(refs, refs)["bleu"] == pytest.approx(100.0)
    assert M.bleu(refs, ["", "", ""])["bleu"] == 0.0


def test_rouge_matches_rouge_score():
    from rouge_score import rouge_scorer

    targets = ["the cats sat on mats .\nthey were happy .", "a storm hit the coast ."]
    preds = ["the cat sat on the mat . it was happy .", "storms hit coasts"]
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeLsum"], use_stemmer=True)
    out = M.rouge(targets, preds)
    for key in ("rouge1", "rouge2", "rougeLsum"):
        per_example = [scorer.score(t, p.replace(" . ", " .\n"))[key].fmeasure for t, p in zip(targets, preds)]
        assert out[key] == pytest.approx(100 * np.mean(per_example))
    assert out["rouge1"] > out["rouge2"] > 0


def test_exact_match_and_errors():
    assert M.exact_match(["abc", "d"], [" abc", "e"]) == {"exact_match": 50.0}
    with pytest.raises(ValueError, match="2 targets but 1 predictions"):
        M.accuracy([1, 0], [1])
    with pytest.raises(ValueError, match="no examples"):
        M.accuracy([], [])


def test_benchmark_averages():
    # Tasks' two metrics are averaged first: MRPC (90 + 80) / 2 = 85, then (85 + 70) / 2.
    assert M.glue_average({"glue_mrpc": {"f1": 90.0, "accuracy": 80.0}, "glue_rte": {"accuracy": 70.0}}) == 77.5
    scores = {"glue_mnli": {"accuracy_matched": 80.0, "accuracy_mismatched": 82.0}, "glue_cola": {"mcc": 50.0},
              "glue_wnli": {"accuracy": 0.0}, "super_glue_rte": {"accuracy": 10.0}}
    assert M.glue_average(scores) == pytest.approx((81.0 + 50.0) / 2)  # WNLI and SuperGLUE tasks do not count
    sg = {"super_glue_cb": {"f1": 60.0, "accuracy": 80.0}, "super_glue_record": {"f1": 50.0, "exact_match": 40.0},
          "super_glue_wsc": {"accuracy": 65.0}, "glue_rte": {"accuracy": 99.0}}
    assert M.super_glue_average(sg) == pytest.approx((70.0 + 45.0 + 65.0) / 3)
    assert math.isnan(M.glue_average({"squad": {"exact_match": 80.0}}))
    assert set(M.GLUE_AVERAGE) | set(M.SUPER_GLUE_AVERAGE) >= {"glue_mnli", "super_glue_multirc"}
