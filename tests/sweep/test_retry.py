"""A worker killed with SIGKILL mid-trial: its trial is retried (by a live worker, or by running the
command again), resumes from the run directory's checkpoint, and the study completes with every row
exactly once. Journal file, SQLite and (with T5LIT_TEST_POSTGRES_URL) PostgreSQL storages."""

import os
import signal
import threading
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sweep.test_worker import FAST, fake_runner, make_sweep, starts
from t5lit.sweep import run_sweep, write_report
from t5lit.sweep.study import StudyStorage, jobs_of

ROWS = [{"name": "quick1", "overrides": {}}, {"name": "quick2", "overrides": {}},
        {"name": "slow", "baseline": True, "overrides": {"fake.steps": 6, "fake.sleep": 0.4}}]


def storages(tmp_path: Path) -> dict[str, str | None]:
    return {"journal": None, "sqlite": f"sqlite:///{tmp_path}/optuna.db",
            "postgresql": os.environ.get("T5LIT_TEST_POSTGRES_URL")}


def kill_when_checkpointed(run_dir: Path, launcher: threading.Thread, min_step: int = 2, timeout: float = 60) -> int:
    """SIGKILL the process running ``run_dir`` once it has saved ``min_step`` steps; returns its pid."""
    deadline = time.time() + timeout
    while time.time() < deadline and launcher.is_alive():
        try:
            step = int((run_dir / "ckpt.json").read_text().split(":")[1].strip(" }"))
            if step >= min_step:
                pid = int((run_dir / "pid").read_text())
                os.kill(pid, signal.SIGKILL)
                return pid
        except (FileNotFoundError, ValueError, IndexError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"{run_dir} never reached step {min_step}")


def check_complete(study: optuna.Study, out: Path, name: str, killed: int) -> None:
    jobs = jobs_of(study)
    assert sorted(jobs) == ["quick1-seed0", "quick2-seed0", "slow-seed0"]
    for job, attempts in jobs.items():
        assert [t.state for t in attempts if t.state == TrialState.COMPLETE] == [TrialState.COMPLETE], job
        assert attempts[-1].state == TrialState.COMPLETE
    slow = jobs["slow-seed0"]
    assert [t.state for t in slow] == [TrialState.FAIL, TrialState.COMPLETE] and "failure" not in slow[0].user_attrs
    runs = starts(out / name / "slow-seed0")
    assert len(runs) == 2 and runs[0] == (killed, 0) and runs[1][0] != killed and runs[1][1] >= 2  # resumed
    for job in ("quick1-seed0", "quick2-seed0"):
        assert len(starts(out / name / job)) == 1


@pytest.mark.parametrize("kind", ["journal", "sqlite", "postgresql"])
def test_killed_worker_trial_is_retried_by_a_live_worker(tmp_path, kind):
    storage = storages(tmp_path)[kind]
    if kind == "postgresql" and not storage:
        pytest.skip("set T5LIT_TEST_POSTGRES_URL to test a PostgreSQL storage")
    name = f"kill_{kind}_{uuid.uuid4().hex[:8]}"  # a fresh study in a shared database
    sweep = make_sweep(tmp_path, {"study": name, "rows": ROWS})
    out = tmp_path / "out"
    box = {}
    thread = threading.Thread(target=lambda: box.update(run_sweep(
        sweep, storage=storage, workers=2, runner=fake_runner, out_dir=out, **FAST)))
    thread.start()
    killed = kill_when_checkpointed(out / name / "slow-seed0", thread)
    thread.join(timeout=120)
    assert not thread.is_alive()
    assert sorted(box["exit_codes"]) == [-signal.SIGKILL, 0] and box["done"] == box["total"] == 3
    store = StudyStorage(storage or str(out / name / f"{name}.journal"))
    check_complete(optuna.load_study(study_name=name, storage=store.storage), out, name, killed)
    report = write_report(sweep, storage=storage, out_dir=out)
    assert "| slow ★ |" in report.markdown and "lost" not in report.markdown


def test_rerunning_the_command_after_a_crash_continues(tmp_path):
    sweep = make_sweep(tmp_path, {"study": "crash", "rows": ROWS})
    out = tmp_path / "out"
    box = {}
    thread = threading.Thread(target=lambda: box.update(run_sweep(
        sweep, workers=1, runner=fake_runner, out_dir=out, **FAST)))
    thread.start()
    killed = kill_when_checkpointed(out / "crash" / "slow-seed0", thread)
    thread.join(timeout=60)
    assert box["exit_codes"] == [-signal.SIGKILL] and box["done"] < 3  # the only worker died
    again = run_sweep(sweep, workers=1, runner=fake_runner, out_dir=out, **FAST)
    assert again["exit_codes"] == [0] and again["done"] == 3
    store = StudyStorage(str(out / "crash" / "crash.journal"))
    check_complete(optuna.load_study(study_name="crash", storage=store.storage), out, "crash", killed)
