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
    # T5 calls rouge-score WITHOUT the Porter stemmer (issue #14: t5lit used to stem, which was wrong); the
    # stemmed variant is an option, compared with the stemming scorer.
    from rouge_score import rouge_scorer

    targets = ["the cats sat on mats .\nthey were happy .", "a storm hit the coast ."]
    preds = ["the cat sat on the mat . it was happy .", "storms hit coasts"]
    for stem, metric in ((False, M.rouge), (True, M.rouge_stemmed)):
        scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeLsum"], use_stemmer=stem)
        out = metric(targets, preds)
        for key in ("rouge1", "rouge2", "rougeLsum"):
            per_example = [scorer.score(t, p.replace(" . ", " .\n"))[key].fmeasure for t, p in zip(targets, preds)]
            assert out[key] == pytest.approx(100 * np.mean(per_example))
        assert out["rouge1"] > out["rouge2"] > 0
    assert M.rouge(targets, preds)["rouge1"] < M.rouge_stemmed(targets, preds)["rouge1"]  # "cats" != "cat" unstemmed


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


# ------------------------------------------------------------------------------------- per-example statistics
def _metric_cases():
    rng = np.random.default_rng(7)
    t2, p2 = _labels(1, 40, 2)
    t3, p3 = _labels(2, 40, 3)
    reg_t = np.round(rng.uniform(0, 5, 30) * 5) / 5
    groups = [(i // 3, i // 3) for i in range(12)]
    mrc_t = [{"value": int(v), "group": g} for v, g in zip(rng.integers(0, 2, 12), groups)]
    mrc_p = [{"value": int(v), "group": g} for v, g in zip(rng.integers(-1, 2, 12), groups)]
    refs = ["Das ist ein kleiner Test.", "Der Hund läuft schnell nach Hause.", "Guten Morgen!", "Ja."]
    hyps = ["Das ist ein Test.", "Der Hund läuft nach Hause.", "Guten Abend!", "Nein"]
    return [(M.accuracy, t2, p2), (M.f1_with_invalid, t2, p2), (M.matthews_corrcoef, t3, p3),
            (M.mean_multiclass_f1(3), t3, p3),
            (M.pearson_spearman, reg_t.tolist(), (reg_t + rng.normal(0, 1, 30)).tolist()),
            (M.multirc_f1_em, mrc_t, mrc_p), (M.squad, [["a b"], ["c"], ["d e f"]], ["a", "c", "x"]),
            (M.exact_match, ["a", "b"], ["a", "c"]), (M.bleu, refs, hyps), (M.rouge, refs, hyps)]


@pytest.mark.parametrize("case", range(10))
def test_every_metric_is_its_per_example_statistics_reduced(case):
    metric, t, p = _metric_cases()[case]
    stats = metric.example_stats(t, p)
    assert stats.shape[0] == len(t) and metric.from_stats(stats) == metric(t, p)
    # A subset of the statistics is the metric of that subset of examples (what a bootstrap resamples).
    keep = list(range(0, len(t), 2))
    sub = metric([t[i] for i in keep], [p[i] for i in keep])
    assert metric.from_stats(stats[keep]) == pytest.approx(sub)


def _real(shared_data, task, split="validation", folder="glue"):
    from t5lit.data.tasks import get_task

    return get_task(task).load(split, shared_data / folder)


def test_classification_metrics_on_real_labels(shared_data):
    cola = _real(shared_data, "glue_cola")
    t = [ex["label"] for ex in cola]
    p = [(len(ex["sentence"]) % 3) - (1 if len(ex["sentence"]) % 11 == 0 else 0) for ex in cola]  # 0, 1, 2, -1
    p = [x if x != 2 else 1 - ti for x, ti in zip(p, t)]
    assert M.matthews_corrcoef(t, p)["mcc"] == pytest.approx(100 * sklearn_metrics.matthews_corrcoef(t, p))
    assert M.accuracy(t, p)["accuracy"] == pytest.approx(100 * sklearn_metrics.accuracy_score(t, p))
    flipped = [1 - ti if pi not in (0, 1) else pi for ti, pi in zip(t, p)]
    assert M.f1_with_invalid(t, p)["f1"] == pytest.approx(100 * sklearn_metrics.f1_score(t, flipped))
    cb = _real(shared_data, "super_glue_cb", folder="superglue")
    t3 = [ex["label"] for ex in cb]
    p3 = [len(ex["premise"]) % 4 - 1 for ex in cb]  # -1 .. 2
    ref = sklearn_metrics.f1_score(t3, p3, labels=[0, 1, 2], average="macro", zero_division=0)
    assert M.mean_multiclass_f1(3)(t3, p3)["f1"] == pytest.approx(100 * ref)
    stsb = _real(shared_data, "glue_stsb")
    st = np.array([float(ex["label"]) for ex in stsb])
    sp = np.round(st + np.sin(np.arange(len(st))), 1)
    out = M.pearson_spearman(st.tolist(), sp.tolist())
    assert out["pearson"] == pytest.approx(100 * scipy_stats.pearsonr(st, sp)[0])
    assert out["spearman"] == pytest.approx(100 * scipy_stats.spearmanr(st, sp)[0])


def _sentence_pairs(shared_data, n=300):
    rte = _real(shared_data, "glue_rte")[:n]
    targets = [ex["sentence1"] for ex in rte]
    # Predictions: the hypothesis (real text sharing some words with the premise), or the premise shortened.
    preds = [ex["sentence2"] if i % 2 else " ".join(ex["sentence1"].split()[: 12 + i % 7]) for i, ex in enumerate(rte)]
    return targets, preds


def test_bleu_matches_sacrebleu_on_real_text(shared_data):
    import sacrebleu

    refs, hyps = _sentence_pairs(shared_data)
    for n in (len(refs), 7, 1):
        ref = sacrebleu.corpus_bleu(hyps[:n], [refs[:n]], smooth_method="exp", smooth_value=0.0, force=False,
                                    lowercase=False, tokenize="intl", use_effective_order=False).score
        assert M.bleu(refs[:n], hyps[:n])["bleu"] == pytest.approx(ref, rel=1e-12, abs=1e-12)
    short = ["Ja", "Oui , oui", "a b"]
    assert M.bleu(short, ["Ja", "Non", "a"])["bleu"] == pytest.approx(sacrebleu.corpus_bleu(
        ["Ja", "Non", "a"], [short], smooth_method="exp", tokenize="intl").score)


def test_rouge_matches_rouge_score_on_real_text(shared_data):
    from rouge_score import rouge_scorer, scoring

    targets, preds = _sentence_pairs(shared_data, 120)
    for stem, metric in ((False, M.rouge), (True, M.rouge_stemmed)):
        scorer = rouge_scorer.RougeScorer(list(M.ROUGE_KEYS), use_stemmer=stem)
        ref = [scorer.score(t.replace(" . ", " .\n"), p.replace(" . ", " .\n")) for t, p in zip(targets, preds)]
        out = metric(targets, preds)
        for key in M.ROUGE_KEYS:
            assert out[key] == pytest.approx(100 * np.mean([r[key].fmeasure for r in ref]), rel=1e-12)
    # T5's `rouge`: the BootstrapAggregator's "mid" (and its interval), reproduced draw for draw.
    np.random.seed(3)
    agg = scoring.BootstrapAggregator()
    scorer = rouge_scorer.RougeScorer(list(M.ROUGE_KEYS), use_stemmer=False)
    for t, p in zip(targets, preds):
        agg.add_scores(scorer.score(target=t.replace(" . ", " .\n"), prediction=p.replace(" . ", " .\n")))
    result = agg.aggregate()
    ours = M.rouge_bootstrap(targets, preds, seed=3)
    for key in M.ROUGE_KEYS:
        expected = (result[key].low.fmeasure, result[key].mid.fmeasure, result[key].high.fmeasure)
        assert ours[key] == pytest.approx(tuple(100 * x for x in expected), rel=1e-12)
        assert abs(ours[key][1] - M.rouge(targets, preds)[key]) < ours[key][2] - ours[key][0]  # mid ~ the mean


# ------------------------------------------------------------------------------------- WSC (T5's wsc_simple)
WSC_CASES = [("Mark", "Mark", 1), ("the Mark", "Mark", 1), ("fuzzy bunny", "the bunny", 1), ("bunny", "fuzzy bunny", 1),
             ("Pete", "Mark", 0), ("Bob", "Bob's hat", 0), ("", "Mark", -1), ("  ", "Mark", -1), ("The", "Mark", -1),
             ("his their", "Mark", -1), ("fluffy bunny", "fuzzy bunny", 0)]


@pytest.mark.parametrize("prediction,referent,expected", WSC_CASES)
def test_wsc_postprocessor_follows_t5(prediction, referent, expected):
    from t5lit.data.tasks import get_task

    assert get_task("super_glue_wsc").postprocess(prediction, {"span1_text": referent}) == expected


def test_wsc_empty_predictions_are_wrong():
    from t5lit.data.tasks import get_task

    task = get_task("super_glue_wsc")
    ex = [{"text": "Mark told Pete lies .", "span1_text": c, "span2_text": "he", "span1_index": 0, "span2_index": 3,
           "label": lab} for c, lab in [("Mark", 0), ("Pete", 0), ("Mark", 1)]]
    assert task.evaluate(ex, ["", "", ""]) == {"accuracy": 0.0}  # was 66.7: "" read as "not the candidate"
    assert task.evaluate(ex, ["Pete", "Mark", "Mark"]) == {"accuracy": 100.0}


def test_wsc_on_the_real_validation_set(shared_data):
    from t5lit.data.tasks import get_task

    if not (shared_data / "superglue" / "WSC" / "val.jsonl").is_file():
        pytest.skip("no WSC/val.jsonl among the real data samples")
    task = get_task("super_glue_wsc")
    ex = task.load("validation", shared_data / "superglue")
    assert len(ex) == 104
    assert task.evaluate(ex, [""] * len(ex)) == {"accuracy": 0.0}  # 63.5 before issue #14
    positives = 100 * sum(e["label"] for e in ex) / len(ex)
    assert task.evaluate(ex, [e["span1_text"] for e in ex])["accuracy"] == pytest.approx(positives)
    oracle = [e["span1_text"] if e["label"] else "somebody else" for e in ex]
    assert task.evaluate(ex, oracle) == {"accuracy": 100.0}
