"""Training strategies as lists of stages (Tables 11-13): for_each, leave_out, train_like, replica and ensemble
members resolve into the plan, bad ones are one line before any work, the Table 11-12 rows mix in the
unsupervised member as the paper does, init: random holds for a for_each stage's instances, a multi-task
pre-training then fine-tuning run killed in each of its stages resumes to the uninterrupted run's results, and an
evaluate stage ensembles earlier stages."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from t5lit.checks import check_experiment
from t5lit.experiment import load_experiment, resolve_experiment
from t5lit.pipeline import run_experiment
from t5lit.registry import ConfigError
from t5lit.schema import Experiment

REPO = Path(__file__).resolve().parents[1]
DEBUG = REPO / "experiments" / "debug_run.yaml"
TASKS = {"finetune.tasks": ["builtin_kind", "builtin_name"]}
MTP_FT = [{"name": "mixture", "kind": "finetune", "init": "random", "task": "finetune.tasks", "train_like": "pretrain"},
          {"name": "ft", "kind": "finetune", "init": "mixture", "task": "finetune.tasks", "for_each": "task"}]


def plan(stages, **overrides):
    return resolve_experiment(DEBUG, {**TASKS, "stages": stages, **overrides}).plan()


def error(stages, **overrides) -> str:
    with pytest.raises(ConfigError) as err:
        resolve_experiment(DEBUG, {**TASKS, "stages": stages, **overrides})
    assert "\n" not in str(err.value)
    return str(err.value)


# ---------------------------------------------------------------------------------------------- the plan
def test_multi_task_pretraining_then_fine_tuning_on_each_task():
    stages = plan(MTP_FT, **{"pretrain.steps": 10, "pretrain.lr": 0.02})
    assert [(s.name, s.init, s.task) for s in stages] == [
        ("mixture", None, ("builtin_kind", "builtin_name")),
        ("ft_builtin_kind", "mixture", ("builtin_kind",)), ("ft_builtin_name", "mixture", ("builtin_name",))]
    mixture, ft = stages[0].settings, stages[1].settings
    assert (mixture.steps, mixture.lr, mixture.schedule, mixture.eval_every) == (10, 0.02, "inverse_sqrt", 3)
    assert (ft.steps, ft.lr, ft.schedule) == (6, 0.001, "constant")  # train_like applies to its own stage only
    assert [s.dir_name for s in stages] == ["finetune/mixture", "finetune/ft_builtin_kind", "finetune/ft_builtin_name"]


def test_leave_one_out_pretrains_without_each_task_then_fine_tunes_on_it():
    stages = plan([{"name": "pretrain", "kind": "pretrain"},
                   {"name": "without", "kind": "finetune", "task": ["finetune.tasks"], "for_each": "leave_one_out"},
                   {"name": "ft", "kind": "finetune", "init": "without", "task": "finetune.tasks", "for_each": "task"}],
                  **{"finetune.tasks": ["builtin_kind", "builtin_name", "builtin_summary"]})
    assert [(s.name, s.init, s.task) for s in stages[1:]] == [
        ("without_builtin_kind", "pretrain", ("builtin_name", "builtin_summary")),
        ("without_builtin_name", "pretrain", ("builtin_kind", "builtin_summary")),
        ("without_builtin_summary", "pretrain", ("builtin_kind", "builtin_name")),
        ("ft_builtin_kind", "without_builtin_kind", ("builtin_kind",)),
        ("ft_builtin_name", "without_builtin_name", ("builtin_name",)),
        ("ft_builtin_summary", "without_builtin_summary", ("builtin_summary",))]
    # one stage that leaves one named task out (it must be in the mixture)
    (stage,) = plan([{"name": "m", "kind": "finetune", "task": ["glue", "squad"], "leave_out": ["glue_rte"]}])
    assert "glue_rte" not in stage.task and "glue_mnli" in stage.task and stage.task[-1] == "squad"


def test_replicas_train_with_their_own_seeds_and_members_resolve_per_task():
    stages = plan([{"name": "pretrain", "kind": "pretrain"},
                   {"name": "pretrain_2", "kind": "pretrain", "init": "random", "replica": 1},
                   {"name": "m1", "kind": "finetune", "init": "pretrain", "task": "finetune.tasks", "for_each": "task"},
                   {"name": "m2", "kind": "finetune", "init": "pretrain_2", "task": "finetune.tasks",
                    "for_each": "task", "replica": 1},
                   {"name": "ens", "kind": "evaluate", "task": "finetune.tasks", "for_each": "task",
                    "members": ["m1", "m2"], "weights": "best"}], seed=3)
    by = {s.name: s for s in stages}
    assert by["pretrain"].seed(3) == 3 and by["pretrain_2"].init is None and by["pretrain_2"].seed(3) != 3
    assert by["m2_builtin_name"].seed(3) == by["pretrain_2"].seed(3)
    assert by["ens_builtin_name"].members == ("m1_builtin_name", "m2_builtin_name")
    assert by["ens_builtin_name"].init == "m1_builtin_name" and by["ens_builtin_name"].task == ("builtin_name",)


@pytest.mark.parametrize("stages, overrides, fragment", [
    ([{"name": "a", "kind": "finetune", "task": ["glue", "squad"], "leave_out": ["cnn_dailymail"]}], {},
     "stages[0].leave_out: leave_out 'cnn_dailymail' is not in the mixture glue, squad; leave-one-out leaves out one"),
    ([{"name": "a", "kind": "finetune", "task": ["glue", "no_such_task"]}], {},
     "stages[0].task[1]: unknown task or mixture 'no_such_task'"),
    ([{"name": "a", "kind": "finetune", "task": ["finetune.tasks"], "temperature": 0, "mixing": "temperature"}], {},
     "temperature must be > 0, got 0"),
    ([{"name": "a", "kind": "finetune", "task": ["finetune.tasks"]}], {"finetune.temperature": -2},
     "finetune.temperature must be > 0, got -2"),
    ([{"name": "a", "kind": "finetune", "task": "finetune.tasks", "for_each": "task"},
      {"name": "b", "kind": "finetune", "init": "a", "task": "builtin_kind"}], {},
     "stages[1].init: init 'a' is a for_each stage; name one of its stages (a_builtin_kind, a_builtin_name)"),
    ([{"name": "a", "kind": "finetune", "task": "builtin_kind", "for_each": "leave_one_out"}], {},
     "for_each leave_one_out needs two tasks or more"),
    ([{"name": "a", "kind": "finetune", "task": "builtin_kind"},
      {"name": "e", "kind": "evaluate", "task": "builtin_kind", "members": ["a", "b"]}], {},
     "stages[1].members[1]: unknown earlier training stage 'b'"),
    ([{"name": "a", "kind": "pretrain", "leave_out": ["squad"]}], {}, "leave_out applies to finetune stages"),
    ([{"name": "a", "kind": "finetune", "task": ["builtin_kind", "unsupervised"], "mixing_limit": None}], {},
     "'unsupervised' has no size for examples_proportional mixing: set mixing_limit (K) or unsupervised_size"),
    ([{"name": "a", "kind": "evaluate", "init": "random", "task": ["builtin_kind", "unsupervised"]}], {},
     "needs weights"),
])
def test_bad_strategies_are_one_line(stages, overrides, fragment):
    assert fragment in error(stages, **overrides)


def test_the_table_11_and_12_rows_mix_in_the_unsupervised_member_as_the_paper_does(tmp_path):
    """Table 11's rows and Table 12's multi-task training, multi-task pre-training + fine-tuning and leave-one-out
    train on the objective mixed with the tasks; supervised multi-task pre-training does not. Each passes the
    checks of `t5lit check` (corpus, objective at the stage's lengths) at the tiny scale."""
    from t5lit.sweep.spec import load_sweep

    expected = {"multi_task_training": True, "multi_task_pretrain_finetune": True, "leave_one_out": True,
                "supervised_multi_task_pretraining": False}
    for name in ("table11_multitask_mixing", "table12_training_strategies"):
        spec = load_sweep(REPO / "sweeps" / f"{name}.yaml")
        for row in spec.rows:
            cfg = load_experiment(spec.base, {**spec.overrides, "scale": "tiny", **TASKS, **row.overrides})
            exp = Experiment.from_dict(cfg, cfg.sources)
            first = exp.plan()[0]
            assert ("unsupervised" in first.task) == expected.get(row.paper_row, True), (name, row.name)
            assert "unsupervised" not in exp.reported_tasks()
            check_experiment(exp, tmp_path / row.name)
    assert {r.paper_row for r in spec.rows} == set(expected)


def test_for_each_instances_of_a_random_init_stage_start_from_fresh_weights():
    """``init: random`` on a for_each stage holds for each of its instances (<name>_<entry>), so that none of them
    loads model.init_from's weights; a stage with no earlier stage to start from did not ask for fresh ones."""
    from t5lit.pipeline import _random_init

    exp = resolve_experiment(DEBUG, {**TASKS, "stages": [
        {"name": "solo", "kind": "finetune", "init": "random", "task": "finetune.tasks", "for_each": "task"},
        {"name": "ft", "kind": "finetune", "init": "solo", "task": "finetune.tasks", "for_each": "task"},
        {"name": "scratch", "kind": "finetune", "init": "random", "task": "builtin_kind"}]})
    by = {s.name: s for s in exp.plan()}
    assert _random_init(exp, by["solo_builtin_kind"]) and _random_init(exp, by["solo_builtin_name"])
    assert _random_init(exp, by["scratch"]) and not _random_init(exp, by["ft_builtin_kind"])
    assert not _random_init(exp, exp.replace(stages=None).plan()[0])  # the default plan's pre-training


# ---------------------------------------------------------------------------------------------- running
KILLER = '''
import json, os, signal, sys
import lightning as L
from t5lit.experiment import resolve_experiment
from t5lit.pipeline import run_experiment

path, overrides, run_dir, label, step = sys.argv[1:]

class Kill(L.Callback):
    def on_train_batch_end(self, trainer, *args):
        if trainer.logger.version == label and trainer.global_step == int(step):
            os.kill(os.getpid(), signal.SIGKILL)

run_experiment(resolve_experiment(path, json.loads(overrides)), run_dir, callbacks=[Kill()])
'''


def _weights(path: Path) -> dict:
    from t5lit.checkpoint import model_weights, read_checkpoint

    return model_weights(read_checkpoint(path))


@pytest.mark.slow
def test_a_multi_task_pretraining_run_killed_in_each_stage_resumes_exactly(tmp_path):
    # Table 12's "multi-task pre-training + fine-tuning": the unsupervised objective mixed with every task (K
    # limits its share), then each task fine-tuned from that.
    stages = [{**MTP_FT[0], "task": ["unsupervised", "finetune.tasks"]}, MTP_FT[1]]
    overrides = {**TASKS, "stages": stages, "finetune.mixing_limit": 64,
                 "model.overrides": {"dropout_rate": 0.1}, "pretrain.steps": 4,
                 "pretrain.checkpoint_every": 2, "finetune.steps": 4, "finetune.eval_every": 2,
                 "evaluation.max_val_examples": 8, "evaluation.max_decode_length": 4}
    whole = run_experiment(resolve_experiment(DEBUG, overrides), tmp_path / "whole")
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    run_dir = tmp_path / "killed"
    for label, step in (("finetune-mixture", 3), ("finetune-ft_builtin_kind", 3), ("finetune-ft_builtin_name", 3)):
        proc = subprocess.run([sys.executable, str(script), str(DEBUG), json.dumps(overrides), str(run_dir), label,
                               str(step)], capture_output=True, text=True, timeout=600, cwd=REPO)
        assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
        stage = label.split("-", 1)[1]
        assert (run_dir / "finetune" / stage / "last.ckpt").is_file()  # killed after a checkpoint, mid-stage
        assert not (run_dir / "finetune" / stage / "done.json").exists()
    resumed = run_experiment(resolve_experiment(DEBUG, overrides), run_dir)
    assert resumed == whole  # scores, summary, curves
    on_disk = json.loads((tmp_path / "whole" / "results.json").read_text())
    assert json.loads((run_dir / "results.json").read_text()) == on_disk
    for stage in ("mixture", "ft_builtin_kind", "ft_builtin_name"):
        a = json.loads((run_dir / "finetune" / stage / "scores.json").read_text())
        b = json.loads((tmp_path / "whole" / "finetune" / stage / "scores.json").read_text())
        assert a == b, stage  # every validation and the best step per task
    best = "finetune/ft_builtin_kind/best-builtin_kind.ckpt"
    got, expected = _weights(run_dir / best), _weights(tmp_path / "whole" / best)
    assert all((got[k] == v).all() for k, v in expected.items())


@pytest.mark.slow
def test_an_evaluate_stage_scores_the_ensemble_of_its_members(tmp_path):
    stages = [{"name": "pretrain", "kind": "pretrain"},
              {"name": "a", "kind": "finetune", "task": "builtin_kind"},
              {"name": "b", "kind": "finetune", "task": "builtin_kind", "replica": 1},
              {"name": "single", "kind": "evaluate", "task": "builtin_kind", "init": "a"},
              {"name": "twice", "kind": "evaluate", "task": "builtin_kind", "members": ["a", "a"]},
              {"name": "pair", "kind": "evaluate", "task": "builtin_kind", "members": ["a", "b"]}]
    exp = resolve_experiment(DEBUG, {"stages": stages, "pretrain.steps": 2, "finetune.steps": 2,
                                     "finetune.eval_every": 2})
    results = run_experiment(exp, tmp_path)

    def scores(name):
        return json.loads((tmp_path / "evaluate" / name / "scores.json").read_text())["best"]["builtin_kind"]

    assert scores("twice")["metrics"] == scores("single")["metrics"]  # an ensemble of one model twice is the model
    assert results["scores"]["builtin_kind"] == scores("pair")["metrics"]  # the last stage's scores are reported
    assert json.loads((tmp_path / "evaluate" / "pair" / "done.json").read_text())["from"] == ["a", "b"]
    wa, wb = _weights(tmp_path / "finetune" / "a" / "final.ckpt"), _weights(tmp_path / "finetune" / "b" / "final.ckpt")
    assert any(not (wa[k] == wb[k]).all() for k in wa)  # the replica trained with a seed of its own
    assert os.path.isfile(tmp_path / "finetune" / "b" / "final.ckpt")
