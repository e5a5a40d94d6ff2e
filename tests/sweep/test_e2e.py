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
