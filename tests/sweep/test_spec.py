"""Sweep-file validation: every mistake is one line naming what was wrong (before any trial starts)."""

from pathlib import Path

import pytest
import yaml

from t5lit.registry import ConfigError
from t5lit.sweep.spec import job_name, load_sweep

BASE = {"name": "fake", "seed": 0, "model": {"arch": "encoder_decoder", "overrides": {}},
        "finetune": {"tasks": ["toy"], "lr": 0.001}, "fake": {"steps": 2, "sleep": 0.0, "score": 50.0}}


def write(tmp_path: Path, sweep: dict, name: str = "s.yaml") -> Path:
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"base": "base.yaml", **sweep}, sort_keys=False))
    return path


ROWS = [{"name": "a", "baseline": True, "overrides": {}}, {"name": "b", "overrides": {"fake.score": 60.0}}]


def test_grid_parses_and_resolves(tmp_path):
    spec = load_sweep(write(tmp_path, {"seeds": [0, 1], "rows": ROWS, "overrides": {"fake.steps": 3}}), schema=False)
    assert spec.kind == "grid" and spec.study == "s" and spec.baseline == "a"
    assert spec.jobs() == ["a-seed0", "a-seed1", "b-seed0", "b-seed1"] and spec.total_trials() == 4
    cfg = spec.experiment(spec.row("b").overrides, 1, job_name("b", 1))
    assert cfg["fake"] == {"steps": 3, "sleep": 0.0, "score": 60.0} and cfg["seed"] == 1 and cfg["name"] == "b-seed1"


def test_search_parses(tmp_path):
    spec = load_sweep(write(tmp_path, {"study": "lr", "space": {
        "finetune.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
        "fake.steps": {"type": "int", "low": 1, "high": 3}}, "n_trials": 5, "pruner": "median"}), schema=False)
    assert spec.kind == "search" and spec.study == "lr" and spec.n_trials == 5 and spec.sampler == "tpe"
    assert [p.name for p in spec.space] == ["finetune.lr", "fake.steps"]


@pytest.mark.parametrize("sweep, message", [
    ({"rows": ROWS, "colums": ["GLUE"]}, "unknown top-level key 'colums'; did you mean 'columns'?"),
    ({"rows": ROWS + [{"name": "a"}]}, "row name 'a' is used twice"),
    ({"rows": [{"name": "a", "overrides": {"model.arc": "prefix_lm"}}]}, "row 'a': override 'model.arc'"),
    ({"rows": [{"name": "a", "overide": {}}]}, "unknown row key 'overide'"),
    ({"rows": ROWS, "overrides": {"fake.stepz": 1}}, "sweep overrides: override 'fake.stepz'"),
    ({}, "got neither"),
    ({"rows": ROWS, "space": {"finetune.lr": {"type": "float", "low": 0.1, "high": 1}}}, "got both"),
    ({"rows": ROWS, "sampler": "tpe"}, "sampler only apply to a search"),
    ({"space": {"finetune.lr": {"type": "float", "low": 1, "high": 0.1}}, "n_trials": 2}, "low (1) must be below"),
    ({"space": {"finetune.lrr": {"type": "float", "low": 0.1, "high": 1}}, "n_trials": 2}, "space: override"),
    ({"space": {"finetune.lr": {"type": "floot", "low": 0.1, "high": 1}}, "n_trials": 2}, "parameter type 'floot'"),
    ({"space": {"finetune.lr": {"choices": [1, 2]}}}, "needs n_trials"),
    ({"space": {"finetune.lr": {"choices": [1]}}, "n_trials": 2, "seeds": [0, 1]}, "one seed per trial"),
    ({"space": {"finetune.lr": {"type": "float", "low": 0.1, "high": 1}}, "n_trials": 2, "sampler": "grid"},
     "needs a step"),
    ({"space": {"finetune.lr": {"choices": [1]}}, "n_trials": 2, "pruner": "meadian"}, "unknown pruner 'meadian'"),
    ({"rows": [{"name": "a b"}]}, "must be letters, digits"),
    ({"rows": ROWS, "seeds": [0, 0]}, "distinct integers"),
    ({"rows": ROWS, "metric": "GLUE"}, "metric 'GLUE' must be a dotted path"),
    ({"rows": [{"name": "a", "baseline": True}, {"name": "b", "baseline": True}]}, "only one row may be"),
])
def test_errors_are_one_line(tmp_path, sweep, message):
    with pytest.raises(ConfigError) as err:
        load_sweep(write(tmp_path, sweep), schema=False)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_missing_files(tmp_path):
    with pytest.raises(ConfigError, match="sweep file not found"):
        load_sweep(tmp_path / "nope.yaml")
    (tmp_path / "s.yaml").write_text("base: missing.yaml\nrows: [{name: a}]\n")
    with pytest.raises(ConfigError, match="base experiment not found"):
        load_sweep(tmp_path / "s.yaml")


def test_grid_sampler_counts_the_grid(tmp_path):
    spec = load_sweep(write(tmp_path, {"space": {"fake.steps": {"type": "int", "low": 1, "high": 3, "step": 1},
                                                 "fake.score": {"choices": [1.0, 2.0]}}, "sampler": "grid"}),
                      schema=False)
    assert spec.n_trials == 6 and spec.space[0].grid_values() == [1, 2, 3]


def test_repository_sweeps_parse():
    for path in sorted(Path(__file__).resolve().parents[2].glob("sweeps/*.yaml")):
        spec = load_sweep(path)
        assert spec.total_trials() >= 1, path
