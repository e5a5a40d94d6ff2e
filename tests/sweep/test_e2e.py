"""End to end with the real pipeline (t5lit.pipeline.run_experiment) on experiments/debug_run.yaml."""

from pathlib import Path

import pytest
import yaml
from optuna.trial import TrialState

from t5lit.sweep import run_sweep, write_report
from t5lit.sweep.study import jobs_of, open_from_url

DEBUG = Path(__file__).resolve().parents[2] / "experiments" / "debug_run.yaml"


@pytest.mark.slow
def test_real_pipeline_grid_and_search(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"base": str(DEBUG), "study": "e2e", "rows": [
        {"name": "enc_dec", "baseline": True, "overrides": {}},
        {"name": "prefix_lm", "overrides": {"model.arch": "prefix_lm"}}]}, sort_keys=False))
    out = tmp_path / "out"
    res = run_sweep(grid, workers=1, out_dir=out, heartbeat_interval=2, grace_period=60)
    assert res["exit_codes"] == [0] and res["complete"] == 2, (out / "e2e" / "logs").iterdir()
    for job in ("enc_dec-seed0", "prefix_lm-seed0"):
        assert (out / "e2e" / job / "results.json").is_file()
        assert (out / "e2e" / job / "pretrain" / "done.json").is_file()
    rep = write_report(grid, out_dir=out)
    assert "| enc_dec ★ |" in rep.markdown and "builtin_kind" in rep.columns and rep.files["curves"].is_file()

    # A search with pruning on: the real pipeline hands the trial to OptunaPruningCallback.
    search = tmp_path / "search.yaml"
    search.write_text(yaml.safe_dump({"base": str(DEBUG), "study": "e2e_search", "space": {
        "finetune.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}}, "n_trials": 2,
        "sampler": "random", "pruner": "median", "metric": "summary.builtin_kind"}, sort_keys=False))
    res = run_sweep(search, workers=1, out_dir=out, heartbeat_interval=2, grace_period=60)
    trials = [ts[-1] for ts in jobs_of(open_from_url("e2e_search", None, out)).values()]
    assert res["done"] == 2 and all(t.state == TrialState.COMPLETE for t in trials)
    assert all(t.intermediate_values for t in trials)  # val/loss reported keyed on the global step


def cpu_ddp_runner(cfg, run_dir, *, trial=None, callbacks=()):
    """The real pipeline, with the GPU worker's trainer settings moved onto CPU processes (gloo): a stand-in
    for a multi-GPU trial that exercises the same launcher, follower and rank handling."""
    from t5lit.pipeline import run_experiment

    cfg = {**cfg, "trainer": {**cfg["trainer"], "accelerator": "cpu"}}
    return run_experiment(cfg, run_dir, trial=trial, callbacks=callbacks)


@pytest.mark.slow
def test_a_trial_on_two_devices_runs_ddp_with_a_follower(tmp_path):
    """--devices-per-trial 2: rank 0 is the worker; Lightning's launcher re-runs the worker module for rank 1,
    which follows rank 0's trial (T5LIT_SWEEP_RUN) instead of claiming one; the trial completes once."""
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"base": str(DEBUG), "study": "ddp", "rows": [
        {"name": "enc_dec", "baseline": True, "overrides": {}}]}, sort_keys=False))
    out = tmp_path / "out"
    res = run_sweep(grid, devices="0,1", devices_per_trial=2, runner=cpu_ddp_runner, out_dir=out,
                    heartbeat_interval=2, grace_period=60)
    logs = "".join(p.read_text() for p in (out / "ddp" / "logs").iterdir())
    assert res["exit_codes"] == [0] and res["complete"] == 1, logs[-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in logs  # the follower joined rank 0
    trials = [ts[-1] for ts in jobs_of(open_from_url("ddp", None, out)).values()]
    assert len(trials) == 1 and trials[0].state == TrialState.COMPLETE
    assert trials[0].user_attrs["summary"]["builtin_kind"] >= 0
    assert (out / "ddp" / "enc_dec-seed0" / "results.json").is_file()


@pytest.mark.slow
def test_a_ddp_search_trial_with_pruning_on_shares_each_decision(tmp_path):
    """With a pruner, rank 0 broadcasts its decision after every validation; the follower must take part
    (it holds RANK_FOLLOWER_TRIAL), or rank 0 would wait for it forever."""
    search = tmp_path / "search.yaml"
    search.write_text(yaml.safe_dump({"base": str(DEBUG), "study": "ddp_search", "space": {
        "finetune.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}}, "n_trials": 1,
        "sampler": "random", "pruner": "median", "metric": "summary.builtin_kind"}, sort_keys=False))
    out = tmp_path / "out"
    res = run_sweep(search, devices="0,1", devices_per_trial=2, runner=cpu_ddp_runner, out_dir=out,
                    heartbeat_interval=2, grace_period=60)
    logs = "".join(p.read_text() for p in (out / "ddp_search" / "logs").iterdir())
    assert res["exit_codes"] == [0] and res["done"] == 1, logs[-3000:]
    trials = [ts[-1] for ts in jobs_of(open_from_url("ddp_search", None, out)).values()]
    assert trials[0].state == TrialState.COMPLETE and trials[0].intermediate_values
