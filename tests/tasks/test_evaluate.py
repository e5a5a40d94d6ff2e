"""Task.evaluate: decoded predictions scored against raw examples, the way the fine-tuning loop calls it."""

import pytest

from t5lit.data.tasks import get_task


def _rte(labels):
    return [{"sentence1": "A.", "sentence2": "B.", "label": lab, "idx": i} for i, lab in enumerate(labels)]


def test_out_of_label_set_and_empty_predictions_are_wrong():
    task = get_task("glue_rte")
    examples = _rte([0, 1, 0, 1])
    assert task.evaluate(examples, ["entailment", "not_entailment", "entailment", "not_entailment"]) == {
        "accuracy": 100.0}
    assert task.evaluate(examples, ["entailment", "", "yes", "not_entailment"]) == {"accuracy": 50.0}
    mrpc = get_task("glue_mrpc")
    ex = [{"sentence1": "a", "sentence2": "b", "label": lab} for lab in (1, 1, 0, 0)]
    # "maybe" on a positive is a miss, "" on a negative a false alarm: TP 1, FN 1, FP 1 -> F1 50.
    assert mrpc.evaluate(ex, ["equivalent", "maybe", "", "not_equivalent"]) == {"f1": 50.0, "accuracy": 50.0}
    stsb = get_task("glue_stsb")
    ex = [{"sentence1": "a", "sentence2": "b", "label": v} for v in (1.0, 2.0, 3.0, 4.0)]
    good = stsb.evaluate(ex, ["1.0", "2.2", "2.8", "4.0"])
    bad = stsb.evaluate(ex, ["1.0", "2.2", "2.8", "four"])
    assert good["pearson"] > 95 and bad["pearson"] < good["pearson"]


def test_unlabelled_examples_and_test_splits_are_not_scored():
    task = get_task("glue_rte")
    assert task.evaluate(_rte([-1, -1]), ["entailment", "entailment"]) == {}
    assert task.evaluate(_rte([-1, 0]), ["entailment", "entailment"]) == {"accuracy": 100.0}
    assert task.has_labels("validation") and not task.has_labels("test")
    assert not get_task("glue_mnli").has_labels("test_mismatched")
    record = get_task("super_glue_record")
    ex = {"passage": "p", "query": "q @placeholder", "entities": ["A"], "answers": [],
          "idx": {"passage": 0, "query": 0}}
    assert record.evaluate([ex], ["A"]) == {}
    with pytest.raises(ValueError, match="2 examples but 1 predictions"):
        task.evaluate(_rte([0, 1]), ["entailment"])


def test_mnli_scores_matched_and_mismatched_apart():
    task = get_task("glue_mnli")
    examples = [{"premise": "p", "hypothesis": "h", "label": lab, "subset": sub}
                for lab, sub in [(0, "matched"), (1, "matched"), (2, "mismatched"), (2, "mismatched")]]
    out = task.evaluate(examples, ["entailment", "contradiction", "contradiction", "contradiction"])
    assert out == {"accuracy_matched": 50.0, "accuracy_mismatched": 100.0}


def test_multirc_and_record_scores():
    multirc = get_task("super_glue_multirc")
    rows = [{"paragraph": "P", "question": f"Q{q}", "answer": "A", "label": lab,
             "idx": {"paragraph": 0, "question": q, "answer": a}}
            for q, a, lab in [(0, 0, 1), (0, 1, 0), (1, 0, 1)]]
    out = multirc.evaluate(rows, ["True", "False", "False"])
    assert out["exact_match"] == 50.0 and out["f1"] == pytest.approx(100 * 2 / 3)
    record = get_task("super_glue_record")
    ex = {"passage": "p", "query": "q", "entities": ["Boston", "Storm"], "answers": ["Boston", "Storm"],
          "idx": {"passage": 0, "query": 0}}
    assert record.evaluate([ex, ex], ["storm", "Boston Globe"]) == pytest.approx(
        {"exact_match": 50.0, "f1": 100 * (1 + 2 / 3) / 2})


def test_generation_tasks_score_text():
    squad = get_task("squad")
    ex = {"question": "Where?", "context": "In the U.S.", "answers": {"text": ["the U.S.", "U.S."]}}
    assert squad.evaluate([ex], ["U . S ."]) == {"exact_match": 100.0, "f1": 100.0}
    wmt = get_task("wmt14_ende")
    ex = [{"en": "Good.", "de": "Das ist gut ."}]
    assert wmt.evaluate(ex, ["Das ist gut ."])["bleu"] == pytest.approx(100.0)
    cnn = get_task("cnn_dailymail")
    out = cnn.evaluate([{"article": "x", "highlights": "Cats sleep .\nDogs bark ."}], ["Cats sleep . Dogs bark ."])
    assert out == pytest.approx({"rouge1": 100.0, "rouge2": 100.0, "rougeLsum": 100.0})
