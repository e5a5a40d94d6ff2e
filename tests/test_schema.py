"""The typed experiment schema: every key of every file of a base chain and every override checked, YAML 1.2
values, ranges, stages as data, and the whole experiment checked before any work (nothing created)."""

from pathlib import Path

import pytest
import yaml

from t5lit.experiment import load_experiment, parse_cli_overrides, resolve_experiment, yaml_load
from t5lit.registry import ConfigError
from t5lit.schema import Experiment, ModelSection, PretrainSection, defaults

REPO = Path(__file__).resolve().parents[1]
BASELINE = REPO / "experiments" / "paper" / "baseline.yaml"


def chain(tmp_path: Path, root: dict, middle: dict, child: dict) -> Path:
    """root.yaml <- middle.yaml <- child.yaml, each a mapping of keys."""
    (tmp_path / "root.yaml").write_text(yaml.safe_dump({"base": str(BASELINE), "scale": "tiny", **root}))
    (tmp_path / "middle.yaml").write_text(yaml.safe_dump({"base": "root.yaml", **middle}))
    (tmp_path / "child.yaml").write_text(yaml.safe_dump({"base": "middle.yaml", **child}))
    return tmp_path / "child.yaml"


def error(fn, *args, **kwargs) -> str:
    with pytest.raises(ConfigError) as err:
        fn(*args, **kwargs)
    message = str(err.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("level", ["root", "middle", "child"])
@pytest.mark.parametrize("data, fragment", [
    ({"pretrian": {"steps": 3}}, "unknown key 'pretrian' at the top level; did you mean 'pretrain'?"),
    ({"pretrain": {"objectve": "lm"}}, "unknown key 'objectve' under 'pretrain'; did you mean 'objective'?"),
    ({"model": {"overrides": {"d_modle": 64}}}, "unknown ModelConfig field 'd_modle' under 'model.overrides'; did "
                                                "you mean 'd_model'?"),
    ({"trainer": {"precison": "32-true"}}, "unknown key 'precison' under 'trainer'; did you mean 'precision'?"),
    ({"trainer": {"max_steps": 3}}, "trainer.max_steps is set by each stage; use pretrain.steps / finetune.steps"),
    ({"evaluation": {"num_beam": 2}}, "unknown key 'num_beam' under 'evaluation'; did you mean 'num_beams'?"),
    ({"stages": [{"name": "p", "kind": "pretrain", "stesp": 3}]}, "unknown key 'stesp' in pretrain stage 'p'; did "
                                                                  "you mean 'steps'?"),
])
def test_a_typo_at_any_level_of_a_base_chain_names_the_file_and_the_closest_key(tmp_path, level, data, fragment):
    files = {"root": {}, "middle": {}, "child": {}}
    files[level] = data
    path = chain(tmp_path, files["root"], files["middle"], files["child"])
    message = error(load_experiment, path)
    assert fragment in message
    assert message.split(": ")[0].endswith(f"{level}.yaml")  # the file that has the typo


def test_override_typos_and_values_name_the_override():
    assert "override 'pretrain.objectve': unknown key 'objectve' under 'pretrain'; did you mean 'objective'?" in \
        error(load_experiment, BASELINE, {"pretrain.objectve": "lm"})
    message = error(resolve_experiment, BASELINE, {"pretrain.objective_params.noise_rate": 0.5})
    assert message.startswith("override: pretrain.objective_params: objective 'iid_denoising' has no parameter "
                              "'noise_rate'")
    message = error(resolve_experiment, BASELINE, {"pretrain.objective_params": {"noise_rate": 0.5}})
    assert message.startswith("override: pretrain.objective_params: objective 'iid_denoising' has no parameter "
                              "'noise_rate'; valid: noise_density, surplus_sentinels")


def test_values_are_yaml_1_2():
    assert parse_cli_overrides(["finetune.lr=1e-4", "a=.5", "b=017", "c=on", "d=0x1f", "e=True", "f=1_000"]) == {
        "finetune.lr": 1e-4, "a": 0.5, "b": 17, "c": "on", "d": 31, "e": True, "f": "1_000"}
    assert yaml_load("lr: 1e-4\nx: 6.02E+23\nn: .inf\ny: yes\nz: ~") == {"lr": 1e-4, "x": 6.02e23,
                                                                     "n": float("inf"), "y": "yes", "z": None}
    exp = resolve_experiment(BASELINE, parse_cli_overrides(["finetune.lr=1e-4", "pretrain.steps=2e3"]))
    assert exp.finetune.lr == 1e-4 and isinstance(exp.finetune.lr, float)
    assert exp.pretrain.steps == 2000 and isinstance(exp.pretrain.steps, int)  # an integral float is an int


@pytest.mark.parametrize("override, fragment", [
    ({"finetune.batch_size": 0}, "finetune.batch_size must be an integer >= 1, got 0"),
    ({"finetune.lr": -1}, "finetune.lr must be a number > 0, got -1.0"),
    ({"finetune.lr": "fast"}, "finetune.lr must be a number, got 'fast'"),
    ({"pretrain.steps": 2.5}, "pretrain.steps must be an integer, got 2.5"),
    ({"finetune.pack": "on"}, "finetune.pack must be true or false, got 'on'"),
    ({"finetune.tasks": ["glue_rtee"]}, "finetune.tasks[0]: unknown task or mixture 'glue_rtee'; did you mean"),
    ({"finetune.mixing": "temp"}, "unknown mixing 'temp'"),
    ({"finetune.temperature": 0}, "finetune.temperature must be > 0"),
    ({"pretrain.objective": "span_corrupton"}, "unknown objective 'span_corrupton'; did you mean 'span_corruption'"),
    ({"pretrain.objective_params": {"noise_density": 1.5}}, "noise_density must be a number in (0.0, 1.0), got 1.5"),
    ({"pretrain.targets_length": 50}, "expected targets length for iid_denoising (192) is greater than the "
                                      "configured targets_length (50)"),
    ({"pretrain.corpus_options": {"pth": "x"}}, "unknown option 'pth' for corpus 'c4'"),
    ({"model.preset": "t5-bass"}, "unknown preset 't5-bass'; did you mean 't5-base'?"),
    ({"model.arch": "encdec"}, "unknown arch 'encdec'"),
    ({"model.overrides": {"d_model": 0}}, "ModelConfig.d_model must be a positive integer"),
    ({"model.depth_factor": 0}, "model.depth_factor must be > 0"),
    ({"evaluation.num_beams": 0}, "evaluation.num_beams must be an integer >= 1, got 0"),
    ({"trainer.precision": "bf17"}, "unknown precision 'bf17'"),
    ({"trainer.devices": 0}, "trainer.devices must be a positive count"),
    ({"seed": -1}, "seed must be an integer >= 0"),
    ({"name": "a b"}, "experiment name 'a b' must be letters, digits"),
])
def test_bad_values_are_one_line_naming_the_key_and_the_source(override, fragment):
    message = error(resolve_experiment, BASELINE, override)
    assert fragment in message
    assert message.startswith("override") or override.get("name")


def test_a_bad_value_in_a_file_names_the_file(tmp_path):
    path = chain(tmp_path, {}, {"finetune": {"batch_size": 0}}, {})
    message = error(resolve_experiment, path)
    assert "middle.yaml: finetune.batch_size must be an integer >= 1, got 0" in message


def test_defaults_live_in_the_schema_and_the_baseline_states_the_paper():
    assert PretrainSection().steps == 2**19 and PretrainSection().lr == 0.01  # Section 3.1.2
    base = resolve_experiment(BASELINE)
    assert base.pretrain == PretrainSection(objective_params={"noise_density": 0.15})  # i.i.d. 15%, Section 3.1.4
    assert base.model == ModelSection()
    assert load_experiment(BASELINE)["finetune"] == defaults()["finetune"]


def test_the_resolved_config_round_trips(tmp_path):
    exp = resolve_experiment(REPO / "experiments" / "quickstart.yaml")
    again = Experiment.from_dict(yaml_load(yaml.safe_dump(exp.to_dict())))
    assert again == exp
    (tmp_path / "resolved.yaml").write_text(yaml.safe_dump(exp.to_dict(), sort_keys=False))
    assert resolve_experiment(tmp_path / "resolved.yaml") == exp


def test_stages_as_data():
    exp = resolve_experiment(BASELINE, {"scale": "tiny"})
    assert [(s.name, s.kind, s.init, s.task) for s in exp.plan()] == [
        ("pretrain", "pretrain", None, ()), ("builtin_kind", "finetune", "pretrain", ("builtin_kind",)),
        ("builtin_summary", "finetune", "pretrain", ("builtin_summary",))]
    stages = [{"name": "mtl", "kind": "pretrain", "steps": 7},
              {"name": "both", "kind": "finetune", "task": ["builtin_kind", "builtin_name"], "lr": 0.002},
              {"name": "scratch", "kind": "finetune", "task": "builtin_kind", "init": "random"},
              {"name": "again", "kind": "finetune", "task": "builtin_kind", "init": "both"},
              {"name": "score", "kind": "evaluate", "task": ["builtin_name"], "init": "both", "weights": "best"}]
    exp = resolve_experiment(BASELINE, {"scale": "tiny", "stages": stages})
    plan = exp.plan()
    assert [(s.name, s.init) for s in plan] == [("mtl", None), ("both", "mtl"), ("scratch", None), ("again", "both"),
                                                ("score", "both")]
    assert plan[0].settings.steps == 7 and plan[0].settings.corpus == "builtin"  # the section, the stage's keys over it
    assert plan[1].settings.lr == 0.002 and plan[1].settings.steps == 300 and plan[1].task == ("builtin_kind",
                                                                                               "builtin_name")
    assert plan[4].settings.max_decode_length == 24  # an evaluate stage takes the evaluation section
    assert exp.reported_tasks() == ["builtin_kind", "builtin_name"]
    assert plan[0].dir_name == "pretrain/mtl" and plan[1].label == "finetune-both"


@pytest.mark.parametrize("stages, fragment", [
    ([{"name": "a", "kind": "finetune"}], "a finetune stage needs task"),
    ([{"name": "a", "kind": "pretrain", "task": "glue"}], "a pretrain stage takes no task"),
    ([{"name": "a", "kind": "train"}], "unknown stage kind 'train'"),
    ([{"name": "a", "kind": "pretrain"}, {"name": "a", "kind": "pretrain"}], "stage name 'a' is used twice"),
    ([{"name": "a", "kind": "finetune", "task": "builtin_kind", "init": "b"}], "unknown earlier training stage 'b'"),
    ([{"name": "e", "kind": "evaluate", "task": "builtin_kind"}], "evaluate stage 'e' needs weights"),
    ([{"name": "a", "kind": "finetune", "task": "builtin_kind", "lr": -1}], "stages[0].lr must be a number > 0"),
    ([{"name": "a", "kind": "finetune", "task": "builtin_kind", "tasks": ["x"]}], "unknown key 'tasks' in finetune"),
    ([], "the experiment runs no stage"),
])
def test_bad_stage_lists_are_one_line(stages, fragment):
    assert fragment in error(resolve_experiment, BASELINE, {"scale": "tiny", "stages": stages})


def test_every_repository_experiment_is_typed():
    for path in sorted((REPO / "experiments").rglob("*.yaml")):
        exp = resolve_experiment(path)
        assert exp.plan(), path
