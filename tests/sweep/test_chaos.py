"""Chaos: during 2-worker sweeps, workers are SIGKILLed at random moments (starting up, holding the study lock,
mid-append, mid-trial) and the journal is torn as a writer dying mid-record would leave it. Every row still
completes exactly once, no two processes ever run one job at the same time, the journal stays readable by
Optuna's own reader, and no worker outlives its sweep. And the sweep's processes die with it: SIGKILL the
supervisor and its workers and their DDP ranks > 0 die; SIGTERM or Ctrl-C it and it stops them and puts
their trials back in the queue.

This module is also the workers' runner module: it imports nothing heavy at the top."""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from sweep.test_worker import FAST, fake_runner, load, make_sweep, process, starts, step, wait_for
from t5lit.io import file_lock
from t5lit.sweep import run_sweep
from t5lit.sweep.study import StudyStorage, is_lost, jobs_of

# 1.5 s a row: long enough that the three mid-trial kills below land before the sweep ends (with 0.6-s rows a
# fast run once finished all six rows after two, and the test could not make its third kill).
ROWS = [{"name": f"r{i}", "overrides": {"fake.steps": 10, "fake.sleep": 0.15}} for i in range(6)]


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie, dead but not yet reaped, is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def worker_pids() -> list[int]:
    """This process's live sweep workers (their supervisor runs in a thread of this test)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == os.getpid() and b"t5lit.sweep.worker" in (proc / "cmdline").read_bytes() \
                    and alive(int(proc.name)):
                pids.append(int(proc.name))
        except (OSError, ValueError, IndexError):
            continue
    return pids


def guarded_runner(cfg, run_dir, *, trial=None, callbacks=()):
    """fake_runner that first checks that the job's previous runner process is dead: two live processes in
    one job would be a run-once violation, written to ``violations`` beside the jobs."""
    run_dir = Path(run_dir)
    owner = run_dir / "pid"
    if owner.exists():
        previous = int(owner.read_text() or 0)
        if previous != os.getpid() and alive(previous):
            with open(run_dir.parent / "violations", "a") as f:
                f.write(f"{run_dir.name}: {os.getpid()} started while {previous} runs\n")
    return fake_runner(cfg, run_dir, trial=trial, callbacks=callbacks)


def tear(journal: Path, rng: random.Random) -> None:
    """What a writer killed mid-record leaves: part of a record at the end, written under the journal's lock."""
    record = json.dumps({"op_code": 6, "worker_id": "chaos", "trial_id": 0, "state": 1, "values": [0.0]})
    with file_lock(f"{journal}.access"), open(journal, "ab") as f:
        f.write(record[: rng.randrange(1, len(record) - 1)].encode())


def mid_trial(out: Path, workers: list[int]) -> list[tuple[str, int]]:
    """(job, worker pid) of the trials that have checkpointed a step and are still running."""
    found = []
    for run_dir in out.glob("*-seed0"):
        try:
            pid = int((run_dir / "pid").read_text())
        except (FileNotFoundError, ValueError):
            continue
        if pid in workers and (run_dir / "ckpt.json").exists() and not (run_dir / "results.json").exists():
            found.append((run_dir.name, pid))
    return found


@pytest.mark.slow
def test_random_worker_kills_and_torn_records_leave_every_row_done_once(tmp_path):
    sweep = make_sweep(tmp_path, {"study": "chaos", "max_retries": 100, "rows": ROWS})
    out, rng = tmp_path / "out", random.Random(11)
    journal = out / "chaos" / "chaos.journal"
    killed_mid_trial: list[str] = []
    kills = tears = 0
    deadline = time.time() + 150
    for _ in range(15):  # a round ends when both workers are dead or the sweep is done; the next continues
        box: dict = {}
        launcher = threading.Thread(target=lambda box=box: box.update(run_sweep(
            sweep, workers=2, runner=guarded_runner, out_dir=out, heartbeat_interval=1, poll=0.1)))
        launcher.start()
        while launcher.is_alive() and time.time() < deadline:
            time.sleep(rng.uniform(0.05, 1.0))
            workers = worker_pids()
            running = mid_trial(out / "chaos", workers)
            if running and len(killed_mid_trial) < 3:  # three kills certainly mid-trial, then anywhere
                job, victim = rng.choice(running)
                killed_mid_trial.append(job)
            elif workers and kills < 10:
                victim = rng.choice(workers)
            else:
                victim = None
            if victim is not None:
                os.kill(victim, signal.SIGKILL)
                kills += 1
            if journal.exists() and rng.random() < 0.3:
                tear(journal, rng)
                tears += 1
        launcher.join(timeout=max(1.0, deadline - time.time()))
        assert not launcher.is_alive(), "the sweep did not finish in time"
        if box["done"] == box["total"]:
            break
    assert box["done"] == box["total"] == 6 and box["failed"] == 0, box
    assert len(killed_mid_trial) == 3 and tears >= 1 and worker_pids() == []
    assert not (out / "chaos" / "violations").exists(), (out / "chaos" / "violations").read_text()
    # The journal: every complete line is one whole record (nothing was appended onto a tear); a tear made
    # after the sweep's last write is cut by the next reader, and Optuna's own reader agrees on every trial.
    lines = journal.read_bytes().split(b"\n")
    assert all(isinstance(json.loads(line), dict) for line in lines[:-1])
    StudyStorage(str(journal))
    assert journal.read_bytes().endswith(b"\n")
    plain = optuna.load_study(study_name="chaos", storage=JournalStorage(JournalFileBackend(str(journal))))
    jobs = jobs_of(plain)
    assert sorted(jobs) == [f"r{i}-seed0" for i in range(6)]
    for job, attempts in jobs.items():  # exactly once: one COMPLETE each, every other attempt a lost worker's
        assert [t.state for t in attempts].count(TrialState.COMPLETE) == 1, job
        assert attempts[-1].state == TrialState.COMPLETE and all(map(is_lost, attempts[:-1])), job
        assert json.loads((out / "chaos" / job / "results.json").read_text())["summary"] == {"toy": 50.0}
    assert all(len(jobs[job]) >= 2 for job in killed_mid_trial)  # killed mid-trial: retried, resumed


SLOW = {"name": "slow", "overrides": {"fake.steps": 30, "fake.sleep": 0.1}}


def ddp_like_runner(cfg, run_dir, *, trial=None, callbacks=()):
    """fake_runner as rank 0 of a DDP trial: it first starts rank 1 the way Lightning's launcher does (the worker
    module again, with LOCAL_RANK=1 and the trial announced in the environment) and waits for it, as DDP's
    rendezvous would; rank 1 follows the trial, which here means writing its pid and waiting."""
    run_dir = Path(run_dir)
    if os.environ.get("LOCAL_RANK", "0") != "0":
        (run_dir / "follower").write_text(str(os.getpid()))
        time.sleep(60)
        return {}
    subprocess.Popen([sys.executable, "-m", "t5lit.sweep.worker"], env={**os.environ, "LOCAL_RANK": "1"})
    wait_for(lambda: (run_dir / "follower").exists(), 60, "rank 1")
    return fake_runner(cfg, run_dir, trial=trial, callbacks=callbacks)


def supervisor(sweep: Path, out: Path, runner: str) -> list[str]:
    """`t5lit sweep run SWEEP --out OUT` in a process of its own, with ``runner`` and a 1 s heartbeat."""
    code = ("import functools, t5lit.sweep\n"
            f"t5lit.sweep.run_sweep = functools.partial(t5lit.sweep.run_sweep, runner={runner!r}, "
            "heartbeat_interval=1, poll=0.1)\n"
            "from t5lit.cli import main\n"
            f"main(['sweep', 'run', {str(sweep)!r}, '--out', {str(out)!r}])\n")
    return [sys.executable, "-c", code]


ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def test_killing_the_supervisor_kills_its_workers_and_their_ddp_ranks(tmp_path):
    sweep = make_sweep(tmp_path, {"study": "orphan", "rows": [SLOW]})
    out = tmp_path / "out"
    run_dir = out / "orphan" / "slow-seed0"
    pids = []
    try:
        with process(supervisor(sweep, out, f"{__name__}:ddp_like_runner"), env=ENV,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as sup:
            wait_for(lambda: (run_dir / "follower").exists() and step(run_dir) >= 1, 90, "rank 1 and a step")
            pids = [int((run_dir / name).read_text()) for name in ("pid", "follower")]  # rank 0 (the worker), 1
            assert all(map(alive, pids))
            os.kill(sup.pid, signal.SIGKILL)
            assert sup.wait(timeout=30) == -signal.SIGKILL
            wait_for(lambda: not any(map(alive, pids)), 10, "the worker and its rank 1 to die with the supervisor")
    finally:
        for pid in filter(alive, pids):
            os.kill(pid, signal.SIGKILL)
    # The next run finds the trial's heartbeat stale, retries it and resumes from its checkpoint.
    again = run_sweep(sweep, workers=1, runner=fake_runner, out_dir=out, heartbeat_interval=1, poll=0.1)
    assert again["done"] == again["complete"] == 1 and again["exit_codes"] == [0]
    assert [t.state for t in jobs_of(load(out, "orphan"))["slow-seed0"]] == [TrialState.FAIL, TrialState.COMPLETE]
    assert starts(run_dir)[1][1] >= 1


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stopping_the_supervisor_stops_its_workers_and_requeues_their_trials(tmp_path, sig):
    sweep = make_sweep(tmp_path, {"study": "stop", "rows": [SLOW]})
    out = tmp_path / "out"
    run_dir = out / "stop" / "slow-seed0"
    # As a terminal's foreground command: a shell starts background jobs with SIGINT ignored, and Python then
    # leaves it ignored (POSIX), so under `.ci/run &` the supervisor never saw the SIGINT and finished the row.
    with process(supervisor(sweep, out, f"{__name__}:fake_runner"), env=ENV, text=True,
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                 preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)) as sup:
        wait_for(lambda: step(run_dir) >= 1, 90, "a checkpointed step")
        worker = int((run_dir / "pid").read_text())
        sup.send_signal(sig)
        printed, err = sup.communicate(timeout=60)
    name = signal.Signals(sig).name
    assert sup.returncode == 128 + sig and not alive(worker)
    assert err.strip().splitlines()[-1] == (f"t5lit: sweep interrupted ({name}); its workers were stopped; run the "
                                           "same command to continue"), err
    assert f"[stop] stopped ({name}): 1 worker(s) killed; slow-seed0 will resume on the next run" in printed
    lost, queued = jobs_of(load(out, "stop"))["slow-seed0"]
    assert is_lost(lost) and queued.state == TrialState.WAITING  # back in the queue: no wait for a stale heartbeat
    again = run_sweep(sweep, workers=1, runner=fake_runner, out_dir=out, **FAST)
    assert again["done"] == again["complete"] == 1 and starts(run_dir)[1][1] >= 1
