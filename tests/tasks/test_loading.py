"""Loading raw examples: the real GLUE / SuperGLUE files, synthetic official files, the hub path, errors."""

import json

import pytest

from t5lit.data.tasks import TASKS, get_task
from t5lit.registry import ConfigError

# Rows (not lines) of the real samples under ../shared/data; CoLA's dev file lacks a final newline.
GLUE_ROWS = [("glue_cola", "train", 8551), ("glue_cola", "validation", 1043), ("glue_sst2", "train", 67349),
             ("glue_sst2", "validation", 872), ("glue_mrpc", "train", 3667), ("glue_mrpc", "validation", 408),
             ("glue_rte", "train", 2490), ("glue_rte", "validation", 277), ("glue_stsb", "train", 5749),
             ("glue_stsb", "validation", 1500)]
SUPER_GLUE_ROWS = [("super_glue_boolq", "validation", 3270), ("super_glue_cb", "train", 250),
                   ("super_glue_cb", "validation", 56), ("super_glue_copa", "train", 400),
                   ("super_glue_copa", "validation", 100), ("super_glue_rte", "train", 2490),
                   ("super_glue_rte", "validation", 277), ("super_glue_wic", "train", 5428),
                   ("super_glue_wic", "validation", 638)]


@pytest.mark.parametrize("name,split,rows", GLUE_ROWS + SUPER_GLUE_ROWS)
def test_real_files_load_with_row_counts(shared_data, name, split, rows):
    folder = "glue" if name.startswith("glue") else "superglue"
    task = get_task(name)
    examples = task.load(split, shared_data / folder)
    assert len(examples) == rows
    assert [ex["idx"] for ex in examples[:3]] == [0, 1, 2]
    assert all(ex["label"] != -1 for ex in examples)
    assert task.format(examples[0])["targets"] != "<unk>"


def test_real_file_values(shared_data):
    cola = get_task("glue_cola").load("validation", shared_data / "glue")[0]
    assert cola == {"sentence": "The sailors rode the breeze clear of the rocks.", "label": 1, "idx": 0}
    mrpc = get_task("glue_mrpc").load("validation", shared_data / "glue")[0]  # file starts with a BOM
    assert mrpc["label"] == 1 and mrpc["sentence1"].startswith("He said the foodservice pie business")
    stsb = get_task("glue_stsb").load("validation", shared_data / "glue")[0]
    assert stsb["label"] == 5.0 and get_task("glue_stsb").format(stsb)["targets"] == "5.0"
    cb = get_task("super_glue_cb").load("validation", shared_data / "superglue")[0]
    assert cb["label"] == 1  # "contradiction" in the hub's order (entailment, contradiction, neutral)


def test_missing_file_names_the_expected_path(tmp_path):
    for name, expected in [("glue_rte", tmp_path / "RTE" / "dev.tsv"),
                           ("glue_mnli", tmp_path / "MNLI" / "dev_matched.tsv"),
                           ("super_glue_cb", tmp_path / "CB" / "val.jsonl"),
                           ("squad", tmp_path / "dev-v1.1.json"), ("cnn_dailymail", tmp_path / "validation.jsonl"),
                           ("wmt14_ende", tmp_path / "validation.en")]:
        with pytest.raises(ConfigError) as err:
            get_task(name).load("validation", tmp_path)
        assert str(expected) in str(err.value) and "\n" not in str(err.value)


def test_unknown_names_and_splits():
    with pytest.raises(ConfigError, match=r"unknown task 'glue_rtee'; did you mean 'glue_rte'\?"):
        get_task("glue_rtee")
    with pytest.raises(ConfigError, match="did you mean 'validation'"):
        get_task("glue_rte").load("valdation")
    with pytest.raises(ConfigError, match="valid: train, validation"):
        get_task("squad").load("test")
    assert len(TASKS) >= 25


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_glue_tsv_variants(tmp_path):
    head = "index\tpromptID\tpairID\tgenre\tsentence1\tsentence2\tlabel1\tgold_label\n"
    _write(tmp_path / "MNLI" / "dev_matched.tsv", head + "0\t1\t1\tx\tA dog runs.\tAn animal runs.\te\tentailment\n"
           "1\t2\t2\tx\tA cat.\tA dog.\tc\tcontradiction\n")
    _write(tmp_path / "MNLI" / "dev_mismatched.tsv", head + "0\t3\t3\ty\tIt rains.\tIt is wet.\tn\tneutral\n")
    _write(tmp_path / "MNLI" / "test_matched.tsv", "index\tpromptID\tpairID\tgenre\tsentence1\tsentence2\n"
           "0\t1\t1\tx\tP.\tH.\n")
    mnli = get_task("glue_mnli")
    val = mnli.load("validation", tmp_path)
    assert [(ex["premise"], ex["label"], ex["subset"]) for ex in val] == [
        ("A dog runs.", 0, "matched"), ("It rains.", 1, "mismatched"), ("A cat.", 2, "matched")]
    assert len(mnli.load("validation_mismatched", tmp_path)) == 1
    test = mnli.load("test_matched", tmp_path)
    assert test[0]["label"] == -1 and mnli.format(test[0])["targets"] == "<unk>"
    _write(tmp_path / "QQP" / "train.tsv", "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
           "5\t1\t2\tWhy?\tHow come?\t1\n")
    assert get_task("glue_qqp").load("train", tmp_path) == [
        {"question1": "Why?", "question2": "How come?", "label": 1, "idx": 0}]
    _write(tmp_path / "CoLA" / "test.tsv", "index\tsentence\n0\tHe ran.\n")
    assert get_task("glue_cola").load("test", tmp_path) == [{"sentence": "He ran.", "label": -1, "idx": 0}]
    _write(tmp_path / "RTE" / "dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tmaybe\n")
    with pytest.raises(ConfigError, match="unexpected label 'maybe'"):
        get_task("glue_rte").load("validation", tmp_path)
    _write(tmp_path / "WNLI" / "dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\tonly two\n")
    with pytest.raises(ConfigError, match=r"dev.tsv:2: 2 tab-separated fields, expected 4"):
        get_task("glue_wnli").load("validation", tmp_path)


def test_superglue_nested_files(tmp_path):
    multirc = {"idx": 7, "passage": {"text": "Tom ran.<br>He won.", "questions": [
        {"idx": 3, "question": "Who won?", "answers": [{"idx": 0, "text": "Tom", "label": 1},
                                                       {"idx": 1, "text": "Ann", "label": 0}]}]}}
    _write(tmp_path / "MultiRC" / "val.jsonl", json.dumps(multirc) + "\n")
    rows = get_task("super_glue_multirc").load("validation", tmp_path)
    assert rows[1] == {"paragraph": "Tom ran.<br>He won.", "question": "Who won?", "answer": "Ann",
                       "idx": {"paragraph": 7, "question": 3, "answer": 1}, "label": 0}
    text = "Storm hits Boston.\n@highlight\nBoston cleans up"
    record = {"idx": 2, "passage": {"text": text, "entities": [{"start": 11, "end": 16}, {"start": 0, "end": 4}]},
              "qas": [{"idx": 9, "query": "@placeholder was hit.", "answers": [
                  {"start": 11, "end": 16, "text": "Boston"}, {"start": 37, "end": 42, "text": "Boston"}]}]}
    _write(tmp_path / "ReCoRD" / "train.jsonl", json.dumps(record) + "\n")
    _write(tmp_path / "ReCoRD" / "val.jsonl", json.dumps(record) + "\n")
    rec = get_task("super_glue_record")
    val = rec.load("validation", tmp_path)
    assert val[0]["entities"] == ["Boston", "Storm"] and val[0]["answers"] == ["Boston"]
    record["qas"][0]["answers"].append({"start": 0, "end": 4, "text": "Storm"})
    _write(tmp_path / "ReCoRD" / "train.jsonl", json.dumps(record) + "\n")
    train = rec.load("train", tmp_path)  # one example per gold answer
    assert [rec.format(ex)["targets"] for ex in train] == ["Boston", "Storm"]
    wsc = [{"text": "Tom hit Al because he was mad .", "target": {"span1_index": 0, "span1_text": "Tom",
            "span2_index": 4, "span2_text": "he"}, "idx": 0, "label": True},
           {"text": "Tom hit Al because he was mad .", "target": {"span1_index": 2, "span1_text": "Al",
            "span2_index": 4, "span2_text": "he"}, "idx": 1, "label": False}]
    for stem in ("train", "val"):
        _write(tmp_path / "WSC" / f"{stem}.jsonl", "".join(json.dumps(x) + "\n" for x in wsc))
    task = get_task("super_glue_wsc")
    assert [ex["idx"] for ex in task.load("train", tmp_path)] == [0]  # correct referents only
    val = task.load("validation", tmp_path)
    assert task.format(val[1]) == {"inputs": "wsc: Tom hit Al because *he* was mad .", "targets": "Al"}
    # Naming Tom is right for both: example 0's candidate is the referent, example 1's (Al) is not.
    assert task.evaluate(val, ["Tom", "Tom"]) == {"accuracy": 100.0}
    assert task.evaluate(val, ["Al", "Al"]) == {"accuracy": 0.0}


def test_squad_cnn_wmt_files(tmp_path):
    squad = {"data": [{"title": "T", "paragraphs": [{"context": "Paris is in France.", "qas": [
        {"id": "q1", "question": "Where is Paris?", "answers": [{"text": "France", "answer_start": 12},
                                                                {"text": "in France", "answer_start": 9}]}]}]}]}
    _write(tmp_path / "dev-v1.1.json", json.dumps(squad))
    rows = get_task("squad").load("validation", tmp_path)
    assert rows[0]["answers"]["text"] == ["France", "in France"] and rows[0]["id"] == "q1"
    assert get_task("squad").evaluate(rows, ["france"]) == {"exact_match": 100.0, "f1": 100.0}
    _write(tmp_path / "validation.jsonl", json.dumps({"article": "A.", "highlights": "B ."}) + "\n")
    assert get_task("cnn_dailymail").load("validation", tmp_path) == [{"article": "A.", "highlights": "B .", "idx": 0}]
    _write(tmp_path / "validation.en", "Hello.\nGood day.\n")
    _write(tmp_path / "validation.ro", "Salut.\nBuna ziua.\n")
    assert get_task("wmt16_enro").load("validation", tmp_path)[1] == {"en": "Good day.", "ro": "Buna ziua.", "idx": 1}
    _write(tmp_path / "validation.de", "Hallo.\n")
    with pytest.raises(ConfigError, match="has 2 lines but validation.de has 1"):
        get_task("wmt14_ende").load("validation", tmp_path)


def test_hub_path_and_failure(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(path, name=None, split=None):
        calls.append((path, name, split))
        if path == "wmt/wmt14":
            return [{"translation": {"de": "Hallo.", "en": "Hello."}}]
        return [{"premise": f"P {split}", "hypothesis": "H", "label": 0, "idx": 0}]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    val = get_task("glue_mnli").load("validation")
    assert calls == [("nyu-mll/glue", "mnli", "validation_matched"), ("nyu-mll/glue", "mnli", "validation_mismatched")]
    assert [ex["subset"] for ex in val] == ["matched", "mismatched"]
    assert get_task("wmt14_ende").load("train") == [{"de": "Hallo.", "en": "Hello.", "idx": 0}]
    get_task("super_glue_wsc").load("validation")
    assert calls[-2:] == [("wmt/wmt14", "de-en", "train"), ("aps/super_glue", "wsc.fixed", "validation")]

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub\nmore lines")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(ConfigError) as err:
        get_task("glue_rte").load("train")
    assert "nyu-mll/glue (rte) split 'train'" in str(err.value) and "data_dir" in str(err.value)
    assert "\n" not in str(err.value)
