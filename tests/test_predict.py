"""``t5lit predict``: test-set predictions in the GLUE and SuperGLUE leaderboards' formats (and plain files for the
other tasks), from one checkpoint, a stage directory's best checkpoints, or an ensemble; official test files
written here in their layouts (the shared samples hold no test files)."""

import json
import zipfile

import pytest
import torch

from t5lit.cli import main
from t5lit.config import preset_config
from t5lit.data.tasks import get_task
from t5lit.model.architectures import build_model
from t5lit.predict import predict, write_plain, write_submission
from t5lit.registry import ConfigError

# ---------------------------------------------------------------------------------------------- fixtures
GLUE_TEST = {  # the official test files' headers (glue_data), two rows each
    "CoLA/test.tsv": ("index\tsentence", ["0\tThe book was read.", "1\tBook the read was."]),
    "SST-2/test.tsv": ("index\tsentence", ["0\ta fine film", "1\ta dull film"]),
    "MRPC/test.tsv": ("index\t#1 ID\t#2 ID\t#1 String\t#2 String", ["0\t1\t2\tA cat sat.\tA cat sat down.",
                                                                     "1\t3\t4\tIt rained.\tIt was sunny."]),
    "STS-B/test.tsv": ("index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2",
                       ["0\tnews\tf\t2012\t1\tnone\tnone\tA man eats.\tA man is eating.",
                        "1\tnews\tf\t2012\t2\tnone\tnone\tA dog runs.\tThe sky is blue."]),
    "QQP/test.tsv": ("id\tquestion1\tquestion2", ["0\tWhy is the sky blue?\tWhat makes the sky blue?",
                                                  "1\tHow do I cook rice?\tWho wrote Hamlet?"]),
    "MNLI/test_matched.tsv": ("index\tpromptID\tpairID\tgenre\tsentence1\tsentence2",
                              ["0\t1\t1e\tfiction\tA man sleeps.\tA person rests.",
                               "1\t2\t2n\tfiction\tIt is hot.\tIt is cold."]),
    "MNLI/test_mismatched.tsv": ("index\tpromptID\tpairID\tgenre\tsentence1\tsentence2",
                                 ["0\t3\t3c\tletters\tShe sings.\tShe is silent."]),
    "QNLI/test.tsv": ("index\tquestion\tsentence", ["0\tWho sang?\tShe sang.", "1\tWhere?\tIt rained."]),
    "RTE/test.tsv": ("index\tsentence1\tsentence2", ["0\tA dog barks.\tAn animal makes noise.", "1\tX.\tY."]),
    "WNLI/test.tsv": ("index\tsentence1\tsentence2", ["0\tThe cup fell because it was heavy.\tThe cup was heavy."]),
    "diagnostic/diagnostic.tsv": ("index\tsentence1\tsentence2", ["0\tThe cat sat.\tA cat sat.",
                                                                  "1\tNo cat sat.\tA cat sat.", "2\tA.\tB."]),
}
SUPERGLUE_TEST = {
    "BoolQ/test.jsonl": [{"question": "is the sky blue", "passage": "The sky is blue.", "idx": 0}],
    "CB/test.jsonl": [{"premise": "He left.", "hypothesis": "He is gone.", "idx": 0},
                      {"premise": "She may come.", "hypothesis": "She came.", "idx": 1}],
    "COPA/test.jsonl": [{"premise": "The man fell.", "choice1": "He slipped.", "choice2": "He sang.",
                         "question": "cause", "idx": 0}],
    "MultiRC/test.jsonl": [{"idx": 0, "passage": {"text": "Tom has a red car. He drives it to work.", "questions": [
        {"question": "What colour is the car?", "idx": 0,
         "answers": [{"text": "Red", "idx": 0}, {"text": "Blue", "idx": 1}]},
        {"question": "Where does Tom drive?", "idx": 1, "answers": [{"text": "To work", "idx": 2}]}]}}],
    "ReCoRD/test.jsonl": [{"idx": 0, "passage": {"text": "Paris is in France.\n@highlight\nA city", "entities": [
        {"start": 0, "end": 4}, {"start": 12, "end": 17}]},
        "qas": [{"query": "@placeholder is a country.", "idx": 7}]}],
    "RTE/test.jsonl": [{"premise": "A dog barks.", "hypothesis": "An animal barks.", "idx": 0}],
    "WiC/test.jsonl": [{"word": "bank", "sentence1": "He sat by the bank.", "sentence2": "She went to the bank.",
                        "idx": 0, "start1": 14, "end1": 18, "start2": 16, "end2": 20}],
    "WSC/test.jsonl": [{"text": "Mark told Pete many lies about himself , which Pete included in his book .",
                        "target": {"span1_text": "Mark", "span2_text": "his", "span1_index": 0, "span2_index": 13},
                        "idx": 0}],
    "AX-b/AX-b.jsonl": [{"sentence1": "The cat sat.", "sentence2": "A cat sat.", "label": "entailment", "idx": 0},
                        {"sentence1": "No cat sat.", "sentence2": "A cat sat.", "label": "not_entailment", "idx": 1}],
    "AX-g/AX-g.jsonl": [{"premise": "The nurse said she was tired.", "hypothesis": "The nurse was tired.",
                         "label": "entailment", "idx": 0, "pair_id": 1},
                        {"premise": "The nurse said he was tired.", "hypothesis": "The nurse was tired.",
                         "label": "entailment", "idx": 1, "pair_id": 1}],
}


def write_glue(root):
    for rel, (header, lines) in GLUE_TEST.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("\n".join([header, *lines]) + "\n")
    return root


def write_superglue(root):
    for rel, records in SUPERGLUE_TEST.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


def save_checkpoint(path, seed: int = 0, arch: str = "encoder_decoder") -> str:
    torch.manual_seed(seed)
    model = build_model(preset_config("tiny", arch=arch, tie_word_embeddings=False)).eval()
    torch.save({"hyper_parameters": {"model_config": model.cfg.to_dict(), "num_beams": 1, "max_decode_length": 4},
                "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "datamodule_hyper_parameters": {"vocab": "builtin", "inputs_length": 64, "targets_length": 8}}, path)
    return str(path)


# ---------------------------------------------------------------------------------------------- formats
def lines(path) -> list[str]:
    return path.read_text().splitlines()


def examples(task: str, data_dir, split: str = "test"):
    return get_task(task).load(split, data_dir)


def test_glue_files_are_index_and_prediction_with_the_leaderboards_labels(tmp_path):
    data = write_glue(tmp_path / "glue")
    out = tmp_path / "out"
    assert write_submission(out / "CoLA.tsv", get_task("glue_cola"), "id", examples("glue_cola", data),
                            ["acceptable", "garbage"]) == 1  # no valid label: written as the first, counted
    assert lines(out / "CoLA.tsv") == ["index\tprediction", "0\t1", "1\t0"]
    write_submission(out / "STS-B.tsv", get_task("glue_stsb"), "score", examples("glue_stsb", data), ["3.8", "7"])
    assert lines(out / "STS-B.tsv") == ["index\tprediction", "0\t3.800", "1\t5.000"]  # clipped to [0, 5]
    mnli = examples("glue_mnli", data, "test_mismatched")
    write_submission(out / "MNLI-mm.tsv", get_task("glue_mnli"), "name", mnli, ["contradiction"])
    assert lines(out / "MNLI-mm.tsv") == ["index\tprediction", "0\tcontradiction"]
    qqp = examples("glue_qqp", data)
    assert [ex["idx"] for ex in qqp] == [0, 1]  # QQP's test file names its index "id"
    write_submission(out / "QNLI.tsv", get_task("glue_qnli"), "name", examples("glue_qnli", data),
                     ["not_entailment", "entailment"])
    assert lines(out / "QNLI.tsv")[1:] == ["0\tnot_entailment", "1\tentailment"]


def test_superglue_files_are_json_lines_with_idx_and_label(tmp_path):
    data = write_superglue(tmp_path / "sg")
    out = tmp_path / "out"

    def write(task, form, preds, name):
        write_submission(out / name, get_task(task), form, examples(task, data), preds)
        return [json.loads(line) for line in lines(out / name)]

    assert write("super_glue_boolq", "lower", ["True"], "BoolQ.jsonl") == [{"idx": 0, "label": "true"}]
    assert write("super_glue_cb", "name", ["contradiction", "neutral"], "CB.jsonl") == [
        {"idx": 0, "label": "contradiction"}, {"idx": 1, "label": "neutral"}]
    assert write("super_glue_copa", "id", ["choice2"], "COPA.jsonl") == [{"idx": 0, "label": 1}]
    assert write("super_glue_wic", "lower", ["False"], "WiC.jsonl") == [{"idx": 0, "label": "false"}]
    assert write("super_glue_wsc", "wsc", ["Mark"], "WSC.jsonl") == [{"idx": 0, "label": "True"}]
    assert write("super_glue_wsc", "wsc", ["Pete"], "WSC.jsonl") == [{"idx": 0, "label": "False"}]
    assert write("super_glue_record", "record", [" France "], "ReCoRD.jsonl") == [{"idx": 7, "label": "France"}]
    assert write("super_glue_multirc", "multirc", ["True", "False", "True"], "MultiRC.jsonl") == [
        {"idx": 0, "passage": {"questions": [{"idx": 0, "answers": [{"idx": 0, "label": 1}, {"idx": 1, "label": 0}]},
                                             {"idx": 1, "answers": [{"idx": 2, "label": 1}]}]}}]
    assert write("super_glue_axb", "name", ["entailment", "not_entailment"], "AX-b.jsonl") == [
        {"idx": 0, "label": "entailment"}, {"idx": 1, "label": "not_entailment"}]


def test_other_tasks_write_one_prediction_per_line_and_squad_its_official_json(tmp_path):
    cnn = [{"article": "a", "highlights": "b"}, {"article": "c", "highlights": "d"}]
    write_plain(tmp_path / "cnn_dailymail.txt", get_task("cnn_dailymail"), cnn, ["one\nsummary", "two"])
    assert lines(tmp_path / "cnn_dailymail.txt") == ["one summary", "two"]
    squad = [{"id": "q1"}, {"id": "q2"}]
    write_plain(tmp_path / "squad.json", get_task("squad"), squad, ["Paris ", "1066"])
    assert json.loads((tmp_path / "squad.json").read_text()) == {"q1": "Paris", "q2": "1066"}


# ---------------------------------------------------------------------------------------------- the command
def test_predict_writes_every_leaderboard_file_from_one_checkpoint(tmp_path):
    glue, sg = write_glue(tmp_path / "glue_data"), write_superglue(tmp_path / "superglue")
    ckpt = save_checkpoint(tmp_path / "m.ckpt")
    out = tmp_path / "out"
    summary = predict([ckpt], ["glue", "super_glue"], out, data_dir=[f"glue={glue}", f"super_glue={sg}"],
                      accelerator="cpu", print_summary=False)
    names = sorted(p.name for p in (out / "glue").iterdir())
    assert names == sorted(["CoLA.tsv", "SST-2.tsv", "MRPC.tsv", "STS-B.tsv", "QQP.tsv", "MNLI-m.tsv", "MNLI-mm.tsv",
                            "QNLI.tsv", "RTE.tsv", "WNLI.tsv", "AX.tsv"])
    assert sorted(p.name for p in (out / "super_glue").iterdir()) == sorted(
        ["BoolQ.jsonl", "CB.jsonl", "COPA.jsonl", "MultiRC.jsonl", "ReCoRD.jsonl", "RTE.jsonl", "WiC.jsonl",
         "WSC.jsonl", "AX-b.jsonl", "AX-g.jsonl"])
    for rel, (_, rows) in GLUE_TEST.items():
        name = {"MNLI/test_matched.tsv": "MNLI-m.tsv", "MNLI/test_mismatched.tsv": "MNLI-mm.tsv",
                "diagnostic/diagnostic.tsv": "AX.tsv"}.get(rel, rel.split("/")[0] + ".tsv")
        got = lines(out / "glue" / name)
        assert got[0] == "index\tprediction"
        assert [r.split("\t")[0] for r in got[1:]] == [str(i) for i in range(len(rows))]
    labels = {r.split("\t")[1] for r in lines(out / "glue" / "AX.tsv")[1:]}
    assert labels <= {"entailment", "neutral", "contradiction"}  # AX in MNLI's labels
    with zipfile.ZipFile(out / "glue.zip") as z:
        assert sorted(z.namelist()) == names  # the files at the archive's root, as the leaderboard takes them
    assert set(summary["scores"]) == {"super_glue_axb", "super_glue_axg"}  # the only labelled test files
    assert set(summary["scores"]["super_glue_axb"]) == {"mcc"}
    assert json.loads((out / "scores.json").read_text()) == summary["scores"]


def test_a_stage_directory_predicts_each_task_with_its_best_checkpoint(tmp_path, capsys):
    glue = write_glue(tmp_path / "glue_data")
    stage = tmp_path / "finetune" / "glue"
    stage.mkdir(parents=True)
    for task in ("glue_mnli", "glue_rte"):
        save_checkpoint(stage / f"best-{task}.ckpt", seed=len(task))
    out = tmp_path / "out"
    main(["predict", "--checkpoint", str(stage), "--task", "glue_rte", "glue_ax", "glue_wnli", "--data_dir", str(glue),
          "--out", str(out), "--accelerator", "cpu"])
    printed = capsys.readouterr().out
    assert "WNLI.tsv: no checkpoint predicts glue_wnli (the paper never trains it)" in printed
    assert lines(out / "glue" / "WNLI.tsv") == ["index\tprediction", "0\t0"]  # the majority class
    assert len(lines(out / "glue" / "AX.tsv")) == 4  # predicted by best-glue_mnli.ckpt
    with pytest.raises(SystemExit) as err:  # CoLA's checkpoint is missing: one line, nothing written
        main(["predict", "--checkpoint", str(stage), "--task", "glue", "--data_dir", str(glue), "--out",
              str(tmp_path / "none")])
    assert err.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()
    assert len(line) == 1 and "CoLA.tsv: no best-glue_cola.ckpt in" in line[0] and "best-glue_mnli.ckpt" in line[0]
    assert not (tmp_path / "none").exists()


def test_an_ensemble_of_one_checkpoint_twice_predicts_as_the_checkpoint(tmp_path):
    sg = write_superglue(tmp_path / "sg")
    ckpt = save_checkpoint(tmp_path / "m.ckpt")
    one = predict([ckpt], ["super_glue_cb", "super_glue_axb"], tmp_path / "one", data_dir=[str(sg)],
                  accelerator="cpu", print_summary=False)
    two = predict([ckpt, ckpt], ["super_glue_cb", "super_glue_axb"], tmp_path / "two", data_dir=[str(sg)],
                  accelerator="cpu", print_summary=False)
    for name in ("CB.jsonl", "AX-b.jsonl"):
        assert lines(tmp_path / "one" / "super_glue" / name) == lines(tmp_path / "two" / "super_glue" / name)
    assert one["scores"] == two["scores"]
    lm = save_checkpoint(tmp_path / "lm.ckpt", arch="prefix_lm")
    with pytest.raises(ConfigError, match="ensemble members must share the architecture"):
        predict([ckpt, lm], ["super_glue_cb"], tmp_path / "three", data_dir=[str(sg)], print_summary=False)
    assert not (tmp_path / "three").exists()


def test_predict_on_real_validation_files_scores_them_too(shared_data, tmp_path):
    ckpt = save_checkpoint(tmp_path / "m.ckpt")
    summary = predict([ckpt], ["glue_rte"], tmp_path / "out", data_dir=[str(shared_data / "glue")], split="validation",
                      max_examples=6, accelerator="cpu", print_summary=False)
    got = lines(tmp_path / "out" / "glue" / "RTE.tsv")
    assert got[0] == "index\tprediction" and len(got) == 7
    assert {r.split("\t")[1] for r in got[1:]} <= {"entailment", "not_entailment"}
    assert set(summary["scores"]["glue_rte"]) == {"accuracy"}


def test_names_without_the_split_are_noted_and_bad_names_are_one_line(tmp_path):
    ckpt = save_checkpoint(tmp_path / "m.ckpt")
    with pytest.raises(ConfigError, match="nothing to predict: squad.json: squad has no 'test' split"):
        predict([ckpt], ["squad"], tmp_path / "out", print_summary=False)
    with pytest.raises(ConfigError, match="unknown task or mixture 'glu'; did you mean 'glue'"):
        predict([ckpt], ["glu"], tmp_path / "out", print_summary=False)
    with pytest.raises(ConfigError, match="checkpoint not found"):
        predict([str(tmp_path / "nope")], ["glue_rte"], tmp_path / "out", print_summary=False)
