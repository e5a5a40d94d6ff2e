"""Validation before any work: `t5lit check`, errors of any stage before pre-training starts (nothing created),
and a plan of explicit stages run end to end."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from t5lit.checks import check_experiment
from t5lit.experiment import resolve_experiment
from t5lit.pipeline import run_experiment
from t5lit.registry import ConfigError

REPO = Path(__file__).resolve().parents[1]
DEBUG = REPO / "experiments" / "debug_run.yaml"


def t5lit(*args, cwd):
    return subprocess.run([sys.executable, "-m", "t5lit.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def test_a_fine_tuning_error_is_caught_before_pre_training_and_nothing_is_created(tmp_path):
    (tmp_path / "data").mkdir()  # no RTE files in it
    exp = resolve_experiment(DEBUG, {"finetune.tasks": ["glue_rte"], "finetune.data_dir": str(tmp_path / "data")})
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"^stage 'glue_rte': task glue_rte: data file not found: .*RTE/train.tsv"):
        run_experiment(exp, run_dir)
    assert not run_dir.exists()


@pytest.mark.parametrize("override, fragment", [
    ({"model.vocab": "missing.model"}, "model.vocab: vocabulary file not found: missing.model"),
    ({"model.vocab": "builtin:5000"}, "model.vocab has 5100 ids but the model's vocab_size is 1152"),
    ({"pretrain.corpus": "files", "pretrain.corpus_options": {"paths": "/nonexistent/*.txt"}},
     "no files match '/nonexistent/*.txt'"),
    ({"pretrain.objective": "iid_denoising", "pretrain.objective_params": {"noise_density": 0.5,
                                                                           "surplus_sentinels": "error"},
      "pretrain.inputs_length": 512}, "needs"),  # more sentinels than the vocabulary's 100 extra ids
    ({"trainer.accelerator": "gpu"}, "no CUDA device is visible"),
])
def test_world_checks_name_what_is_wrong(override, fragment, tmp_path):
    if override.get("trainer.accelerator") == "gpu":
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is visible")
    exp = resolve_experiment(DEBUG, override)
    with pytest.raises(ConfigError) as err:
        check_experiment(exp, tmp_path / "run")
    assert fragment in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "run").exists()


def test_an_unwritable_or_file_run_directory(tmp_path):
    exp = resolve_experiment(DEBUG)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="exists and is not a directory"):
        check_experiment(exp, tmp_path / "file")
    with pytest.raises(ConfigError, match="is a file, not a directory"):
        check_experiment(exp, tmp_path / "file" / "run")


def test_check_command_prints_the_resolved_config_or_one_line(tmp_path):
    out = t5lit("check", str(DEBUG), "finetune.lr=1e-4", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "  lr: 0.0001\n" in out.stdout and out.stdout.strip().splitlines()[-1].startswith("# ok: 2 stage(s)")
    out = t5lit("check", str(DEBUG), "finetune.batch_size=0", cwd=tmp_path)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip() == "t5lit: error: override: finetune.batch_size must be an integer >= 1, got 0"
    out = t5lit("check", str(REPO / "sweeps" / "quickstart.yaml"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    oks = [line for line in out.stdout.splitlines() if line.startswith("# ok ")]
    assert len(oks) == 6 and "# ok lm_lm: model.arch=decoder_only" in out.stdout
    assert not any(tmp_path.iterdir())  # a check creates nothing


def test_a_sweep_row_with_a_bad_objective_parameter_fails_before_any_trial(tmp_path):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(f"base: {REPO / 'experiments' / 'quickstart.yaml'}\nrows:\n"
                     "  - {name: a, overrides: {pretrain.objective_params: {noise_densty: 0.2}}}\n")
    out = t5lit("sweep", "run", str(sweep), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert out.returncode == 2
    assert "row 'a': override: pretrain.objective_params: objective 'iid_denoising' has no parameter " \
           "'noise_densty'" in out.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_an_explicit_plan_runs_and_resumes(tmp_path):
    stages = [{"name": "pretrain", "kind": "pretrain"},
              {"name": "both", "kind": "finetune", "task": ["builtin_kind", "builtin_name"]},
              {"name": "kind_again", "kind": "finetune", "task": "builtin_kind", "init": "both", "steps": 3},
              {"name": "score", "kind": "evaluate", "task": "builtin_name", "init": "both", "weights": "best"}]
    exp = resolve_experiment(DEBUG, {"stages": stages})
    results = run_experiment(exp, tmp_path)
    assert (tmp_path / "finetune" / "both" / "final.ckpt").is_file()  # a later stage starts from it
    assert not (tmp_path / "finetune" / "kind_again" / "final.ckpt").exists()
    assert set(results["scores"]) == {"builtin_kind", "builtin_name"}
    score = json.loads((tmp_path / "evaluate" / "score" / "scores.json").read_text())
    assert results["scores"]["builtin_name"] == score["best"]["builtin_name"]["metrics"]
    assert set(results["summary"]) == {"builtin_kind", "builtin_name"}
    again = run_experiment(exp, tmp_path)
    assert again == results
