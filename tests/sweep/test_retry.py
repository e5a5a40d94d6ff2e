"""A worker killed with SIGKILL mid-trial: its trial is retried (by a live worker, or by running the
command again), resumes from the run directory's checkpoint, and the study completes with every row
exactly once. Journal file, SQLite and (with T5LIT_TEST_POSTGRES_URL) PostgreSQL storages. A lost trial is
retried within two heartbeat intervals; a failed row runs again with --retry-failed or once its row is
fixed, and `t5lit sweep run` exits non-zero while a trial failed."""

import functools
import os
import signal
import sys
import threading
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sweep.test_worker import FAST, fake_runner, make_sweep, process, starts, step, wait_for
from t5lit.sweep import run_sweep, write_report
from t5lit.sweep.study import LOST_AFTER, StudyStorage, is_lost, jobs_of, open_study

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


def test_a_lost_trial_is_retried_within_two_heartbeat_intervals(tmp_path):
    """Two workers started by hand (no supervisor sees the death): the survivor, idle, checks every quarter
    interval and fails the dead worker's trial once its last beat is LOST_AFTER (1.75) intervals old, so the
    retry starts within two intervals of the death, and resumes from the checkpoint."""
    from t5lit.sweep.spec import load_sweep
    from t5lit.sweep.worker import PARENT_ENV, runner_ref

    beat = 2.0
    sweep = make_sweep(tmp_path, {"study": "beat", "rows": [
        {"name": "slow", "overrides": {"fake.steps": 30, "fake.sleep": 0.1}}]})
    out, url = tmp_path / "out", str(tmp_path / "out" / "beat" / "beat.journal")
    store = StudyStorage(url, heartbeat_interval=beat)
    assert store.grace_period == LOST_AFTER * beat < 2 * beat
    open_study(load_sweep(sweep, schema=False), store)
    args = [sys.executable, "-m", "t5lit.sweep.worker", "--sweep", str(sweep), "--storage", url, "--out", str(out),
            "--runner", runner_ref(fake_runner), "--heartbeat", str(beat)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), PARENT_ENV: str(os.getpid())}
    run_dir = out / "beat" / "slow-seed0"
    with process([*args, "--name", "w0"], env=env) as w0, process([*args, "--name", "w1"], env=env) as w1:
        wait_for(lambda: step(run_dir) >= 2, what="two checkpointed steps")
        victim = int((run_dir / "pid").read_text())
        os.kill(victim, signal.SIGKILL)
        killed_at = time.time()
        survivor = w1 if victim == w0.pid else w0
        assert survivor.wait(timeout=60) == 0
    first, retry = jobs_of(optuna.load_study(study_name="beat", storage=store.storage))["slow-seed0"]
    assert is_lost(first) and retry.state == TrialState.COMPLETE
    waited = retry.datetime_start.timestamp() - killed_at  # the claim's own time and the machine's load: + 0.75 s
    assert 0 < waited < 2 * beat + 0.75, waited
    runs = starts(run_dir)
    assert runs[1][0] == survivor.pid and runs[1][1] >= 2  # resumed


def test_a_failed_row_runs_again_with_retry_failed_or_once_its_row_is_fixed(tmp_path, capsys, monkeypatch):
    """Through `t5lit sweep run`: exit code 1 and one line naming the failed row; a plain re-run leaves it;
    --retry-failed runs it again (it fails again: exit 1); once the sweep file fixes the row, the next run
    retries it by itself, and the sweep exits 0; `t5lit sweep status` shows the attempts."""
    import t5lit.sweep
    from t5lit.cli import main

    monkeypatch.setattr(t5lit.sweep, "run_sweep", functools.partial(run_sweep, runner=fake_runner, **FAST))
    rows = [{"name": "ok"}, {"name": "bad", "overrides": {"fake.steps": "two"}}]  # the runner raises TypeError
    sweep = make_sweep(tmp_path, {"study": "fix", "rows": rows})
    out = tmp_path / "out"
    cmd = ["sweep", "run", str(sweep), "--out", str(out)]

    def run(*extra) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            main([*cmd, *extra])
            code = 0
        except SystemExit as err:
            code = err.code
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    failed = ("t5lit: sweep fix: 1 of 2 trials failed: bad-seed0 (TypeError: 'str' object cannot be interpreted as "
              "an integer); fix the cause, then run again with --retry-failed (`t5lit sweep status` shows every row)")
    code, printed, err = run()
    assert (code, err) == (1, failed + "\n") and "| bad |" in printed  # the report still printed
    assert run()[0::2] == (1, failed + "\n") and len(starts(out / "fix" / "bad-seed0")) == 1  # not retried
    code, printed, err = run("--retry-failed")
    assert (code, err) == (1, failed + "\n")
    assert "[fix] retrying 1 failed trial(s) (--retry-failed): bad-seed0" in printed
    assert len(starts(out / "fix" / "bad-seed0")) == 2  # ran again, failed again
    rows[1]["overrides"]["fake.steps"] = 2  # the fix
    make_sweep(tmp_path, {"study": "fix", "rows": rows})
    code, printed, err = run()
    assert (code, err) == (0, "")
    assert "[fix] retrying 1 failed trial(s) (changed in the sweep file since they failed): bad-seed0" in printed
    assert len(starts(out / "fix" / "bad-seed0")) == 3 and len(starts(out / "fix" / "ok-seed0")) == 1
    main(["sweep", "status", str(sweep), "--out", str(out)])
    table = capsys.readouterr().out
    assert "bad-seed0  complete  3         50" in table and "ok-seed0   complete  1         50" in table
    assert "2/2 done: 2 complete" in table
