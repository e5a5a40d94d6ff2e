"""The Evaluator on hand-made predictions for every task family: decoded text -> postprocessed values ->
metrics -> the headline score and samples; the summary columns of the paper; an end-to-end evaluation with a
fake predictor through token ids."""

import math

import numpy as np
import pytest
import torch

from t5lit.data.mixtures import get_task_or_mixture
from t5lit.data.tasks import get_task
from t5lit.evaluator import EvalResult, EvalSet, Evaluator, TaskResult, headline_score, summarize


def score(task_name, examples, predictions):
    task = get_task(task_name)
    return Evaluator([task], vocab=None, num_samples=2).score_task(task, examples, predictions)


def test_classification_glue_rte():
    ex = [{"sentence1": "A.", "sentence2": "B.", "label": lab, "idx": i} for i, lab in enumerate([0, 1, 0, 1])]
    r = score("glue_rte", ex, ["entailment", "not_entailment", "", "maybe"])
    assert r.metrics == {"accuracy": 50.0} and r.score == 50.0 and r.num_examples == 4
    assert r.samples == [{"input": "rte sentence1: A. sentence2: B.", "prediction": "entailment",
                          "target": "entailment"},
                         {"input": "rte sentence1: A. sentence2: B.", "prediction": "not_entailment",
                          "target": "not_entailment"}]


def test_two_metrics_average_into_the_headline_mrpc_and_cb():
    ex = [{"sentence1": "a", "sentence2": "b", "label": lab} for lab in (1, 1, 0, 0)]
    r = score("glue_mrpc", ex, ["equivalent", "maybe", "", "not_equivalent"])
    assert r.metrics == {"f1": 50.0, "accuracy": 50.0} and r.score == 50.0
    cb = [{"premise": "p", "hypothesis": "h", "label": lab} for lab in (0, 1, 2)]
    r = score("super_glue_cb", cb, ["entailment", "contradiction", "contradiction"])
    assert r.score == pytest.approx((r.metrics["f1"] + r.metrics["accuracy"]) / 2)
    assert r.metrics["accuracy"] == pytest.approx(200 / 3)


def test_regression_stsb_and_grouped_mnli():
    ex = [{"sentence1": "a", "sentence2": "b", "label": v} for v in (1.0, 2.0, 3.0, 4.0)]
    r = score("glue_stsb", ex, ["1.0", "2.2", "2.8", "four"])
    assert set(r.metrics) == {"pearson", "spearman"} and r.score == pytest.approx(
        (r.metrics["pearson"] + r.metrics["spearman"]) / 2)
    mnli = [{"premise": "p", "hypothesis": "h", "label": lab, "subset": sub}
            for lab, sub in [(0, "matched"), (1, "matched"), (2, "mismatched"), (2, "mismatched")]]
    r = score("glue_mnli", mnli, ["entailment", "contradiction", "contradiction", "contradiction"])
    assert r.metrics == {"accuracy_matched": 50.0, "accuracy_mismatched": 100.0} and r.score == 75.0


def test_multirc_record_squad_wmt_cnn():
    rows = [{"paragraph": "P", "question": f"Q{q}", "answer": "A", "label": lab,
             "idx": {"paragraph": 0, "question": q, "answer": a}} for q, a, lab in [(0, 0, 1), (0, 1, 0), (1, 0, 1)]]
    r = score("super_glue_multirc", rows, ["True", "False", "False"])
    assert r.metrics["exact_match"] == 50.0 and r.score == pytest.approx((50.0 + 100 * 2 / 3) / 2)
    rec = {"passage": "p", "query": "q", "entities": ["Boston"], "answers": ["Boston"],
           "idx": {"passage": 0, "query": 0}}
    assert score("super_glue_record", [rec], ["Boston"]).score == 100.0
    sq = {"question": "Where?", "context": "In the U.S.", "answers": {"text": ["the U.S."]}}
    r = score("squad", [sq, sq], ["U . S .", "France"])
    assert r.metrics == {"exact_match": 50.0, "f1": 50.0} and r.score == 50.0  # SQuAD's headline: EM
    r = score("wmt16_enro", [{"en": "It is good.", "ro": "Acesta este bine ."}], ["Acesta este bine ."])
    assert r.score == pytest.approx(100.0) and set(r.metrics) == {"bleu"}
    r = score("cnn_dailymail", [{"article": "x", "highlights": "Cats sleep .\nDogs bark ."}], ["Cats sleep ."])
    assert r.score == r.metrics["rouge2"] and r.metrics["rouge1"] > r.metrics["rouge2"]  # CNN/DM's: ROUGE-2


def test_unlabelled_examples_are_not_scored_and_builtin_tasks_average_all_metrics():
    ex = [{"sentence1": "A.", "sentence2": "B.", "label": -1}, {"sentence1": "A.", "sentence2": "B.", "label": 0}]
    r = score("glue_rte", ex, ["entailment", "entailment"])
    assert r.num_examples == 1 and r.metrics == {"accuracy": 100.0}
    kind = get_task("builtin_kind")
    r = score("builtin_kind", [{"docstring": "x", "label": 0}, {"docstring": "y", "label": 2}], ["module", "class"])
    assert kind.headline == () and r.score == pytest.approx((r.metrics["accuracy"] + r.metrics["f1"]) / 2)
    assert math.isnan(headline_score(get_task("squad"), {}))


def test_summary_columns():
    scores = {"squad": {"exact_match": 80.0, "f1": 88.0}, "builtin_kind": {"accuracy": 50.0, "f1": 40.0},
              "glue_mrpc": {"f1": 90.0, "accuracy": 80.0}, "glue_rte": {"accuracy": 70.0},
              "wmt14_ende": {"bleu": 27.0}, "cnn_dailymail": {"rouge1": 41.0, "rouge2": 19.0, "rougeLsum": 38.0}}
    assert summarize(scores, ["squad", "builtin_kind", "glue", "wmt14_ende", "cnn_dailymail"]) == {
        "SQuAD": 80.0, "builtin_kind": 45.0, "GLUE": 77.5, "EnDe": 27.0, "CNNDM": 19.0}
    assert summarize(scores, ["glue_rte"]) == {"glue_rte": 70.0}  # one GLUE task is not the GLUE column
    tr = {"squad": TaskResult("squad", {"exact_match": 60.0}, 60.0, 10)}
    assert summarize(tr, ["squad", "glue"]) == {"SQuAD": 60.0}  # nothing scored for GLUE: no column


class WordVocab:
    """Ids 3.. are words; 1 is EOS. decode stops at EOS, as the real vocabulary does."""

    eos_id, vocab_size = 1, 40

    def __init__(self, words):
        self.words = ["<pad>", "</s>", "<unk>", *words]

    def encode(self, text):
        return [self.words.index(w) if w in self.words else 2 for w in text.split()]

    def decode(self, ids):
        out = []
        for i in ids:
            if i == 1:
                break
            if i > 2:
                out.append(self.words[i])
        return " ".join(out)


class Scripted:
    """A predictor that answers each input row with the ids of a scripted word (by the row's first token)."""

    def __init__(self, vocab, answers):
        self.vocab, self.answers, self.seen = vocab, answers, []

    def predict(self, inputs, *, num_beams, max_new_tokens, length_penalty_alpha):
        self.seen.append(num_beams)
        rows = [[*self.vocab.encode(self.answers[int(r[0])]), 1] for r in inputs.tolist()]
        width = max(map(len, rows))
        return torch.tensor([r + [0] * (width - len(r)) for r in rows])


def test_evaluate_through_token_ids_with_a_fake_predictor(tmp_path):
    (tmp_path / "RTE").mkdir()
    (tmp_path / "RTE" / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\tA\tB\tentailment\n"
                                              "1\tA\tB\tnot_entailment\n2\tA\tB\tentailment\n")
    vocab = WordVocab(["rte", "sentence1:", "sentence2:", "A", "B", "entailment", "not_entailment"])
    tasks = get_task_or_mixture("glue_rte")
    data = EvalSet.load(tasks, vocab, inputs_length=16, data_dirs=str(tmp_path))
    assert [list(x) for x in data.inputs["glue_rte"]][0] == [3, 4, 6, 5, 7, 1]
    predictor = Scripted(vocab, {3: "entailment"})  # every input starts with "rte": always "entailment"
    result = Evaluator(tasks, vocab, num_beams=None, max_decode_length=4).evaluate(predictor, data, batch_size=2)
    assert isinstance(result, EvalResult) and result.metrics() == {"glue_rte": {"accuracy": pytest.approx(200 / 3)}}
    assert predictor.seen == [1, 1]  # two batches, the task's own greedy decoding
    r = result.tasks["glue_rte"]
    assert r.samples[0] == {"input": "rte sentence1: A sentence2: B", "prediction": "entailment",
                            "target": "entailment"}
    again = Evaluator(tasks, vocab).score_tokens(data, [0, 0, 0], [2, 0, 1], [[8, 1], [8, 1], [9, 1]])
    assert again.tasks["glue_rte"].metrics == {"accuracy": 100.0}  # any order of (task, example) pairs
    assert TaskResult.from_dict(r.to_dict()) == r
    assert np.isfinite(r.score)


def test_per_example_statistics_and_intervals():
    from t5lit.data.tasks.base import ExampleScores
    from t5lit.evaluator import task_score_from

    mnli = [{"premise": "p", "hypothesis": "h", "label": lab, "subset": sub}
            for lab, sub in [(0, "matched"), (1, "matched"), (2, "mismatched"), (2, "mismatched"), (1, "matched")]]
    preds = ["entailment", "contradiction", "contradiction", "neutral", "neutral"]
    r = score("glue_mnli", mnli, preds)
    scores = ExampleScores.from_dict(r.examples)
    assert r.examples["groups"] == ["matched", "mismatched"] and len(scores) == 5
    task = get_task("glue_mnli")
    assert task.metrics_from(scores) == r.metrics and task_score_from(task, r.examples) == r.score
    assert task.metrics_from(scores, [0, 0, 2]) == {"accuracy_matched": 100.0, "accuracy_mismatched": 100.0}
    for name, (low, high) in r.intervals.items():
        assert low <= r.metrics[name] <= high
    assert TaskResult.from_dict(r.to_dict()) == r
    # A metric of your own without per-example statistics: its single-example scores stand in (builtin_name's
    # ROUGE-1 on names is a mean over examples, so they are exact).
    names = [{"docstring": "x", "name": n, "kind": "function"} for n in ("read_text", "open", "close")]
    r = score("builtin_name", names, ["read", "open", "shut"])
    scores = ExampleScores.from_dict(r.examples)
    assert scores.names[1] == ("rouge1",) and get_task("builtin_name").metrics_from(scores) == pytest.approx(r.metrics)
    none = Evaluator([task], vocab=None, interval_samples=0).score_task(task, mnli, preds)
    assert none.intervals == {} and none.examples is not None
