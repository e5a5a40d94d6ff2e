from pathlib import Path

import pytest
import yaml

from t5lit.experiment import SCALES, apply_overrides, load_experiment, parse_cli_overrides
from t5lit.registry import ConfigError

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_base_chain_scale_and_override_precedence(tmp_path):
    write(tmp_path / "root.yaml", {"model": {"preset": "t5-base", "overrides": {}},
                                          "pretrain": {"steps": 1000, "batch_size": 128, "checkpoint_every": 5},
                                          "finetune": {"steps": 10, "batch_size": 8, "eval_every": 5}})
    write(tmp_path / "child.yaml", {"base": "root.yaml", "scale": "small", "finetune": {"steps": 7}})
    cfg = load_experiment(tmp_path / "child.yaml", {"pretrain.batch_size": 4})
    assert cfg["name"] == "child" and cfg["resolved_scale"] == "small"
    assert cfg["model"]["preset"] == "t5-small"             # from the scale
    assert cfg["pretrain"]["steps"] == SCALES["small"]["pretrain.steps"]
    assert cfg["finetune"]["steps"] == 7                     # the child file beats the scale
    assert cfg["pretrain"]["batch_size"] == 4                # the override beats everything
    # A resolved config loads again unchanged.
    again = write(tmp_path / "resolved.yaml", cfg)
    assert {k: v for k, v in load_experiment(again).items() if k != "name"} == \
        {k: v for k, v in cfg.items() if k != "name"}


def test_override_errors_are_one_line():
    cfg = {"model": {"preset": "x", "overrides": {}}, "pretrain": {"objective": "span_corruption"}}
    with pytest.raises(ConfigError) as err:
        apply_overrides(cfg, {"pretrain.objectiv": "lm"})
    assert "did you mean 'objective'" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="is a value, not a section"):
        apply_overrides(cfg, {"pretrain.objective.x": 1})
    # Free-form maps accept new keys one level down.
    assert apply_overrides(cfg, {"model.overrides.d_model": 64})["model"]["overrides"] == {"d_model": 64}
    with pytest.raises(ConfigError, match="must look like"):
        parse_cli_overrides(["pretrain.steps"])
    assert parse_cli_overrides(["a.b=3", "c=[1, 2]", "d=null"]) == {"a.b": 3, "c": [1, 2], "d": None}


def test_missing_file_loop_and_bad_scale(tmp_path):
    with pytest.raises(ConfigError, match="experiment file not found"):
        load_experiment(tmp_path / "nope.yaml")
    write(tmp_path / "a.yaml", {"base": "b.yaml"})
    write(tmp_path / "b.yaml", {"base": "a.yaml"})
    with pytest.raises(ConfigError, match="loops back"):
        load_experiment(tmp_path / "a.yaml")
    write(tmp_path / "c.yaml", {"scale": "huge"})
    with pytest.raises(ConfigError, match="unknown scale 'huge'"):
        load_experiment(tmp_path / "c.yaml")


def test_every_pipeline_experiment_resolves():
    for path in sorted(EXPERIMENTS.rglob("*.yaml")):
        if path.name == "debug.yaml":  # LightningCLI format, covered by the CLI test
            continue
        cfg = load_experiment(path)
        assert {"model", "finetune"} <= set(cfg), path
