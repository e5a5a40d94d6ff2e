"""The diagnostic and extra tasks (paper Section 2.3): GLUE's AX cast as MNLI, SuperGLUE's AX-b and AX-g cast as
RTE, and DPR in WSC's format as SuperGLUE's extra training data; read from files in the official layouts."""

import json

import pytest

from t5lit.data.mixtures import task_names
from t5lit.data.tasks import get_task
from t5lit.evaluator import EvalSet, summarize
from t5lit.registry import ConfigError

DPR_TRAIN = """The bee landed on the flower because it had pollen.
it
bee,flower
flower

The bee landed on the flower because it wanted pollen.
it
bee , flower
bee

"""


def test_glue_ax_is_mnli_formatted_and_test_only(tmp_path):
    (tmp_path / "diagnostic").mkdir()
    (tmp_path / "diagnostic" / "diagnostic.tsv").write_text(
        "index\tsentence1\tsentence2\n0\tThe cat sat on the mat.\tA cat sat.\n1\tNo cat sat.\tThe cat sat.\n")
    task = get_task("glue_ax")
    exs = task.load("test", tmp_path)
    assert [ex["idx"] for ex in exs] == [0, 1] and all(ex["label"] == -1 for ex in exs)
    assert task.format(exs[0]) == {"inputs": "mnli hypothesis: A cat sat. premise: The cat sat on the mat.",
                                   "targets": "<unk>"}
    assert task.postprocess("contradiction", exs[0]) == 2  # MNLI's labels
    assert task.splits == ("test",) and task.column is None
    with pytest.raises(ConfigError, match="unknown split of task glue_ax: 'validation'"):
        task.load("validation", tmp_path)
    assert "glue_ax" not in task_names("glue") and "glue_ax" not in task_names("supervised")


def test_superglue_axb_and_axg_are_rte_formatted_and_labelled(tmp_path):
    for folder, records in {"AX-b": [{"sentence1": "The cat sat.", "sentence2": "A cat sat.", "label": "entailment",
                                      "idx": 0, "logic": "Negation"}],
                            "AX-g": [{"premise": "The nurse said she was tired.", "hypothesis": "The nurse was tired.",
                                      "label": "not_entailment", "idx": 3, "pair_id": 1}]}.items():
        (tmp_path / folder).mkdir()
        (tmp_path / folder / f"{folder}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    axb, axg = get_task("super_glue_axb"), get_task("super_glue_axg")
    (b,), (g,) = axb.load("test", tmp_path), axg.load("test", tmp_path)
    assert axb.format(b) == {"inputs": "rte hypothesis: A cat sat. premise: The cat sat.", "targets": "entailment"}
    assert axg.format(g) == {"inputs": "rte hypothesis: The nurse was tired. premise: The nurse said she was tired.",
                             "targets": "not_entailment"}
    assert b["label"] == 0 and g["label"] == 1 and g["idx"] == 3
    assert axg.evaluate([g], ["not_entailment"]) == {"accuracy": 100.0}  # the files carry labels: predict scores them
    assert axb.data_files("test", tmp_path) == [tmp_path / "AX-b" / "AX-b.jsonl"]
    (tmp_path / "AX-b" / "AX-b.jsonl").write_text(json.dumps({"sentence1": "a", "sentence2": "b", "label": "maybe",
                                                               "idx": 0}) + "\n")
    with pytest.raises(ConfigError, match=r"AX-b\.jsonl:1: label: unexpected label \"maybe\"; valid: entailment"):
        axb.load("test", tmp_path)


def test_dpr_reads_the_authors_files_in_wsc_format(tmp_path):
    (tmp_path / "DPR").mkdir()
    (tmp_path / "DPR" / "train.c.txt").write_text(DPR_TRAIN)
    task = get_task("dpr")
    exs = task.load("train", tmp_path)
    assert [(ex["candidates"], ex["label"], ex["idx"]) for ex in exs] == [(["bee", "flower"], 1, 0),
                                                                         (["bee", "flower"], 0, 1)]
    assert task.format(exs[0]) == {"inputs": "wsc: The bee landed on the flower because *it* had pollen.",
                                   "targets": "flower"}
    # T5's regex: the first " <pronoun>" before a space, "." or ","; the sentence's first word is never marked
    ex = {"sentence": "He said he would, and he did.", "pronoun": "he", "candidates": ["Bob", "Tom"], "label": 0}
    assert task.format(ex)["inputs"] == "wsc: He said *he* would, and he did."
    ex = {"sentence": "Tom thanked the host, then he.", "pronoun": "he", "candidates": ["Tom", "host"], "label": 0}
    assert task.format(ex)["inputs"] == "wsc: Tom thanked the host, then *he*."
    assert task.splits == ("train", "test") and task.column is None


def test_dpr_file_errors_name_the_file_and_line(tmp_path):
    (tmp_path / "DPR").mkdir()
    path = tmp_path / "DPR" / "train.c.txt"
    path.write_text("A sentence.\nit\na,b\n\nNext one.\nit\nc,d\nnobody\n")
    with pytest.raises(ConfigError) as err:
        get_task("dpr").load("train", tmp_path)
    assert str(err.value) == (f"{path}:1: an example of 3 line(s); each has four (sentence, pronoun, candidates "
                              "separated by a comma, the correct one) and a blank line after it")
    path.write_text("A sentence.\nit\na,b\na\n\nNext one.\nit\nc,d\nnobody\n")
    with pytest.raises(ConfigError, match=r"train\.c\.txt:9: the answer 'nobody' is not one of the candidates "
                                          r"'c', 'd'"):
        get_task("dpr").load("train", tmp_path)
    path.write_text("")
    with pytest.raises(ConfigError, match="no examples"):
        get_task("dpr").load("train", tmp_path)


def test_dpr_trains_in_super_glue_and_is_never_scored(tmp_path):
    assert task_names("super_glue")[-1] == "dpr"
    task = get_task("dpr")

    class Vocab:
        eos_id = 1

        def encode(self, text):
            return [3] * len(text.split())

    data = EvalSet.load([task], Vocab(), inputs_length=16, split="validation", data_dirs=str(tmp_path))
    assert data.raw == {"dpr": []} and list(data.batches(4)) == []  # no validation split: nothing to score
    # SGLUE is the mean over the scored tasks only: DPR never enters it
    assert summarize({"super_glue_rte": {"accuracy": 60.0}}, ["super_glue"]) == {"SGLUE": 60.0}


def test_hub_names_of_the_new_tasks(monkeypatch):
    import datasets

    calls = []

    def fake(path, name=None, split=None):
        calls.append((path, name, split))
        if "definite" in path:
            return [{"sentence": "Bob met Tom and he smiled.", "pronoun": "he", "candidates": ["Bob", "Tom"],
                     "label": 1}]
        return [{"premise": "p", "hypothesis": "h", "sentence1": "p", "sentence2": "h", "label": -1, "idx": 5}]

    monkeypatch.setattr(datasets, "load_dataset", fake)
    assert get_task("glue_ax").load("test")[0]["idx"] == 5
    get_task("super_glue_axb").load("test")
    get_task("super_glue_axg").load("test")
    assert get_task("dpr").load("train")[0]["idx"] == 0
    assert calls == [("nyu-mll/glue", "ax", "test"), ("aps/super_glue", "axb", "test"),
                     ("aps/super_glue", "axg", "test"),
                     ("community-datasets/definite_pronoun_resolution", "plain_text", "train")]
