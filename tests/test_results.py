"""What results.json records beside the scores (issue #14): per-example statistics and intervals from the
stages' best scores, the reported tasks, the run's cost (parameters, FLOPs per token, training tokens); and
what a run puts on TensorBoard's HParams dashboard (hyperparameters, per-task scores, cost, wall time)."""

import os
import time
from pathlib import Path

import pytest

from t5lit.experiment import load_experiment
from t5lit.pipeline import _log_hparams, as_experiment, collect_results, hparam_metrics, run_cost, wall_time

REPO = Path(__file__).resolve().parents[1]


def _exp(path="experiments/quickstart.yaml", **overrides):
    return as_experiment(load_experiment(REPO / path, overrides))


def test_cost_is_the_papers_p_and_m():
    from t5lit.model.architectures import build_model, count_parameters

    base = run_cost(_exp("experiments/paper/baseline.yaml"))
    assert base["pretrain_tokens"] == 2**35  # 2^19 steps x 128 x 512 (Section 3.1.2)
    assert base["parameters"] == 222_903_552  # ~220M
    lm = run_cost(_exp("experiments/paper/baseline.yaml", **{"model.arch": "decoder_only"}))
    half = run_cost(_exp("experiments/paper/baseline.yaml", **{"model.depth_factor": 0.5}))
    assert lm["parameters"] / base["parameters"] == pytest.approx(0.5, abs=0.02)  # P against 2P
    assert lm["flops_per_token"] / base["flops_per_token"] == pytest.approx(1.0, abs=0.03)  # M against M
    assert half["flops_per_token"] / base["flops_per_token"] == pytest.approx(0.55, abs=0.01)  # M/2 + the output layer
    quick = run_cost(_exp())
    exp = _exp()
    assert quick["parameters"] == count_parameters(build_model(exp.model.config()))
    assert quick["train_tokens"] == 500 * 16 * 64 + 400 * 16 * 96  # one fine-tuning stage on both tasks
    assert quick["train_flops"] == pytest.approx(quick["flops_per_token"] * quick["train_tokens"])


def test_collect_results_keeps_examples_intervals_and_reported():
    exp = _exp(**{"stages": None, "finetune.tasks": ["builtin_kind", "builtin_summary"]})  # a stage per task
    plan = exp.plan()
    record = {"n": 2, "names": [None], "stats": [[[1, 0]]]}
    states = {"builtin_kind": {"history": {}, "best": {"builtin_kind": {
                  "score": 50.0, "step": 100, "metrics": {"accuracy": 50.0, "f1": 40.0}, "examples": record,
                  "intervals": {"accuracy": [0.0, 100.0]}}}},
              "builtin_summary": {"history": {}, "best": {"builtin_summary": {
                  "score": 10.0, "step": 100, "metrics": {"rouge1": 10.0}}}}}
    results = collect_results(exp, plan, states)
    assert results["reported"] == ["builtin_kind", "builtin_summary"]
    assert results["examples"] == {"builtin_kind": record} and results["intervals"]["builtin_kind"]["accuracy"]
    assert results["cost"] == run_cost(exp, plan)
    metrics = hparam_metrics(results)
    assert metrics["score/builtin_kind"] == 45.0 and metrics["metric/builtin_summary/rouge1"] == 10.0
    assert metrics["summary/builtin_kind"] == 45.0 and metrics["cost/parameters"] == results["cost"]["parameters"]


def test_hparams_and_wall_time(tmp_path):
    tb = tmp_path / "tb" / "pretrain"
    tb.mkdir(parents=True)
    started = int(time.time()) - 100
    event = tb / f"events.out.tfevents.{started}.host.1.0"
    event.write_bytes(b"")
    os.utime(event, (started + 30, started + 30))
    assert wall_time(tmp_path) == pytest.approx(30.0, abs=1.0) and wall_time(tmp_path / "nothing") is None
    exp = _exp()
    results = {"summary": {"builtin_kind": 45.0}, "scores": {"builtin_kind": {"accuracy": 50.0, "f1": 40.0}},
               "cost": {"parameters": 1000}}
    _log_hparams(exp, results, tmp_path)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tb"))  # the session: tb/ itself, the stages its sub-runs
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"score/builtin_kind", "metric/builtin_kind/f1", "summary/builtin_kind", "cost/parameters",
            "cost/wall_time_s"} <= tags
    assert "wall_time_s" not in results.get("cost", {})  # results stay a pure function of the seed
