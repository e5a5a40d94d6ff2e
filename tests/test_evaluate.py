"""``t5lit eval``: a checkpoint of a tiny fine-tuned model scored on builtin and file-based tasks, and the
mistakes a user can make (unknown task, missing checkpoint or data file) as one-line errors."""

import lightning as L
import pytest
import torch

from t5lit.cli import main
from t5lit.data.datamodule import FinetuneDataModule
from t5lit.evaluate import evaluate_checkpoint, format_scores
from t5lit.lit_module import T5LitModule

RTE_DEV = ("index\tsentence1\tsentence2\tlabel\n"
           "0\tA dog runs in the park.\tAn animal runs.\tentailment\n"
           "1\tThe sky is green.\tThe sky is blue.\tnot_entailment\n"
           "2\tShe reads a book.\tShe reads.\tentailment\n")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(checkpoint path, val metrics logged at its step): 2 fine-tuning steps of the tiny preset."""
    path = tmp_path_factory.mktemp("eval") / "tiny.ckpt"
    torch.manual_seed(0)
    data = FinetuneDataModule(tasks="builtin_kind", inputs_length=64, targets_length=8, batch_size=8,
                              max_val_examples=8)
    module = T5LitModule(preset="tiny", lr=0.01, warmup_steps=5, max_decode_length=4)
    trainer = L.Trainer(max_steps=2, val_check_interval=2, check_val_every_n_epoch=None, accelerator="cpu",
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(module, datamodule=data)
    trainer.save_checkpoint(path)
    logged = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/builtin_kind/")}
    return str(path), logged


def test_eval_command_prints_the_task_metrics(trained, capsys):
    ckpt, logged = trained
    main(["eval", "--checkpoint", ckpt, "--task", "builtin_kind", "--max_examples", "8", "--batch_size", "4"])
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-3:-1] == ["| task | accuracy | f1 |", "|---|---:|---:|"] and out[-1].startswith("| builtin_kind | ")
    scores = evaluate_checkpoint(ckpt, "builtin_kind", max_examples=8, accelerator="cpu")
    assert set(scores) == {"builtin_kind"} and set(scores["builtin_kind"]) == {"accuracy", "f1"}
    # The checkpoint's lengths and vocabulary are used: the scores are those logged in training at its step.
    assert {f"val/builtin_kind/{k}": v for k, v in scores["builtin_kind"].items()} == pytest.approx(logged)
    assert out[-1] == format_scores(scores).splitlines()[-1]


def test_eval_on_another_task_and_on_local_files_with_only_a_validation_split(trained, tmp_path, capsys):
    ckpt, _ = trained
    scores = evaluate_checkpoint(ckpt, "builtin_name", max_examples=4, accelerator="cpu")
    assert set(scores["builtin_name"]) == {"exact_match", "rouge1"}
    (tmp_path / "RTE").mkdir()
    (tmp_path / "RTE" / "dev.tsv").write_text(RTE_DEV)  # no train.tsv: evaluation needs none
    main(["eval", "--checkpoint", ckpt, "--task", "glue_rte", "--data_dir", str(tmp_path)])
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-3:-1] == ["| task | accuracy |", "|---|---:|"] and out[-1].startswith("| glue_rte | ")
    scores = evaluate_checkpoint(ckpt, "glue_rte", data_dir=str(tmp_path), accelerator="cpu")
    assert set(scores) == {"glue_rte"} and set(scores["glue_rte"]) == {"accuracy"}
    assert scores["glue_rte"]["accuracy"] in (0.0, 100 / 3, 200 / 3, 100.0)  # 3 examples


def eval_error(capsys, *args) -> str:
    with pytest.raises(SystemExit) as err:
        main(["eval", *args])
    assert err.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_eval_errors_are_one_line(trained, tmp_path, capsys):
    ckpt, _ = trained
    line = eval_error(capsys, "--checkpoint", str(tmp_path / "none.ckpt"), "--task", "glue_rtee")
    assert "unknown task or mixture 'glue_rtee'; did you mean 'glue_rte'?" in line  # checked before the checkpoint
    assert "valid: builtin_kind, builtin_name, builtin_summary, " in line and "super_glue" in line
    line = eval_error(capsys, "--checkpoint", str(tmp_path / "none.ckpt"), "--task", "builtin_kind")
    assert line == f"t5lit: error: checkpoint not found: {tmp_path / 'none.ckpt'}"
    line = eval_error(capsys, "--checkpoint", ckpt, "--task", "glue_rte", "--data_dir", str(tmp_path))
    assert f"data file not found: {tmp_path / 'RTE' / 'dev.tsv'}" in line
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    line = eval_error(capsys, "--checkpoint", str(tmp_path / "other.ckpt"), "--task", "builtin_kind")
    assert "is not a t5lit checkpoint" in line
