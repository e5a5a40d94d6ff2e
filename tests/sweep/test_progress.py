"""The sweep's progress line: each running job's stage and step (from the progress.json its run writes), the
sweep's training steps done out of all, and an ETA from the rate of steps as soon as steps are taken."""

import json
import time
from datetime import datetime, timedelta
from pathlib import Path

import yaml

from t5lit.sweep.spec import load_sweep
from t5lit.sweep.supervisor import StepProgress, _format_progress, _minutes

DEBUG = Path(__file__).resolve().parents[2] / "experiments" / "debug_run.yaml"


def test_steps_and_eta_from_the_first_steps(tmp_path):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump({"base": str(DEBUG), "study": "p", "rows": [
        {"name": "a", "baseline": True, "overrides": {}}, {"name": "b", "overrides": {"finetune.steps": 12}}]}))
    spec = load_sweep(sweep)
    steps = StepProgress(spec, tmp_path)
    assert steps.plan("a-seed0") == [("pretrain", 6), ("finetune-builtin_kind", 6)]
    assert steps.plan("b-seed0") == [("pretrain", 6), ("finetune-builtin_kind", 12)]
    job = tmp_path / "p" / "b-seed0"
    job.mkdir(parents=True)

    def at(stage, step, max_steps):
        (job / "progress.json").write_text(json.dumps({"stage": stage, "step": step, "max_steps": max_steps}))

    p = {"done": 1, "total": 2, "failed": 0, "pruned": 0, "mean_duration": None,
         "running": [("b-seed0", "host:1", datetime.now() - timedelta(minutes=3))]}
    at("pretrain", 2, 6)
    first = steps.measure(p)
    assert first["total"] == 12 + 18 and first["done"] == 15 + 2 and first["eta"] is None
    line = _format_progress(spec, p, time.time() - 200, first)
    assert "running: b-seed0 (pretrain 2/6, 3m)" in line and "steps 17/30 (57%)" in line and line.endswith("ETA ?")
    at("finetune-builtin_kind", 4, 12)
    second = steps.measure(p)
    assert second["done"] == 15 + 6 + 4 and second["eta"] is not None and second["eta"] >= 0
    line = _format_progress(spec, p, time.time() - 200, second)
    assert "(finetune-builtin_kind 4/12, 3m)" in line and "| ETA ~" in line


def test_without_progress_files_the_line_still_reads():
    class Spec:
        study = "s"

    p = {"done": 0, "total": 3, "failed": 0, "pruned": 0, "mean_duration": None, "running": []}
    assert _format_progress(Spec(), p, time.time()) == "[s] 0/3 done (0 failed, 0 pruned) | running: - | " \
                                                       "elapsed <1m | ETA ?"
    assert (_minutes(42), _minutes(125), _minutes(3900)) == ("<1m", "2m", "1h05m")
