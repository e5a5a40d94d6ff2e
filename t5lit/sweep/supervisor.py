"""Running a sweep: validate it, open its study, start the worker processes, print progress until they exit.

``run_sweep`` validates the sweep file, opens the storage and the study (enqueueing every job), starts one
worker process per GPU (or per group of K GPUs, ``device_groups``) or N on CPU (sharing the cores,
``cpu_threads``): ``python -m t5lit.sweep.worker`` with CUDA_VISIBLE_DEVICES set per worker and logs under
``<out>/<study>/logs/``. It then prints one progress line whenever the counts change (and every
``log_every`` seconds) and returns the final counts with the workers' exit codes. What a worker does with
a trial is ``t5lit.sweep.worker``'s business; the supervisor never runs a trial itself, so several
supervisors (machines) can share one study.

No worker outlives the supervisor: each worker runs in its own process group and dies with the
supervisor (``t5lit.sweep.worker.die_with_parent``); on Ctrl-C, SIGTERM, SIGHUP or an error the supervisor
kills its workers' groups (DDP ranks > 0 included) and puts their trials back in the queue, so the same
command continues them at once. A worker seen dead while the sweep runs has its trial re-queued at once, and
every quarter heartbeat interval the supervisor also fails trials whose heartbeat went stale (a worker on
another machine, or frozen), so that a lost trial waits at most two heartbeat intervals.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

from t5lit.registry import ConfigError
from t5lit.sweep.spec import SweepSpec, check_sweep, load_sweep
from t5lit.sweep.study import StudyStorage, default_storage, fail_lost, open_study, progress

STOP_SIGNALS = ("SIGTERM", "SIGHUP")


class Interrupted(KeyboardInterrupt):
    """The supervisor received SIGTERM or SIGHUP (Ctrl-C is a plain KeyboardInterrupt): stop like Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def device_groups(devices: str | list[int] | None, per_trial: int, workers: int) -> list[str | None]:
    """CUDA_VISIBLE_DEVICES per worker: ``device_groups("0,1,2,3", 2, 1) == ["0,1", "2,3"]``; without
    devices, ``workers`` CPU workers that leave the environment as it is (``[None] * workers``)."""
    if not devices:
        if workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {workers}")
        return [None] * workers
    ids = [str(d).strip() for d in (devices.split(",") if isinstance(devices, str) else devices) if str(d).strip()]
    bad = [d for d in ids if not (d.isdigit() or d.startswith(("GPU-", "MIG-")))]
    if bad or not ids:
        raise ConfigError(f"--devices {','.join(map(str, ids)) or devices!r}: give GPU ids as CUDA_VISIBLE_DEVICES "
                          f"takes them (0,1,2,3 or GPU-<uuid>), got {', '.join(bad) or 'none'}")
    if len(set(ids)) != len(ids):
        raise ConfigError(f"--devices {','.join(ids)} names a GPU twice")
    if per_trial < 1 or len(ids) % per_trial:
        raise ConfigError(f"--devices-per-trial {per_trial} must divide the {len(ids)} devices {','.join(ids)}")
    return [",".join(ids[i:i + per_trial]) for i in range(0, len(ids), per_trial)]


def cpu_threads(workers: int) -> int:
    """Intra-op threads per CPU worker: the usable cores split evenly (``cpu_threads(2) == 1`` on 2 cores)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, workers))


class StepProgress:
    """Training steps done and to do across a sweep, for the progress line: each running job's stage and step
    come from its ``<out>/<study>/<job>/progress.json`` (t5lit.callbacks.ThroughputMonitor writes it every few
    seconds), each job's steps from its plan (the sum of its training stages' steps, read once per row). The
    rate of steps over this session's time gives the ETA as soon as the first steps are taken; finished jobs
    count whole. Without t5lit's pipeline as the runner (no plan, no progress files) it measures nothing."""

    def __init__(self, spec: SweepSpec, out_dir: Path):
        self.spec, self.folder = spec, Path(out_dir) / spec.study
        self._plans: dict[str, list[tuple[str, int]]] = {}
        self._first: tuple[float, float] | None = None  # (time, steps done) when steps were first seen

    def plan(self, job: str) -> list[tuple[str, int]]:
        """(stage label, steps) of a job's training stages; [] when it cannot be read."""
        row = job.rsplit("-seed", 1)[0] if self.spec.kind == "grid" else ""
        if row not in self._plans:
            try:
                from t5lit.schema import Experiment

                overrides = self.spec.row(row).overrides if row else {}
                exp = Experiment.from_dict(self.spec.experiment(overrides, self.spec.seeds[0], job or "job"))
                self._plans[row] = [(st.label, int(st.settings.steps)) for st in exp.plan()
                                    if st.kind in ("pretrain", "finetune")]
            except Exception:  # noqa: BLE001 - a progress line never stops a sweep
                self._plans[row] = []
        return self._plans[row]

    def running(self, job: str) -> tuple[str, int, int, int] | None:
        """(stage label, its step, its steps, the job's steps done) of a running job, from its progress file."""
        try:
            data = json.loads((self.folder / job / "progress.json").read_text())
            label, step, max_steps = str(data["stage"]), int(data["step"]), int(data["max_steps"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        plan = self.plan(job)
        labels = [lbl for lbl, _ in plan]
        before = sum(n for _, n in plan[:labels.index(label)]) if label in labels else 0
        return label, step, max_steps, before + step

    def measure(self, p: dict) -> dict | None:
        """``{"done", "total", "eta", "jobs": {job: (label, step, max_steps, job steps)}}`` or None."""
        if not self.spec.schema:
            return None
        jobs = self.spec.jobs() if self.spec.kind == "grid" else []
        per_job = [sum(n for _, n in self.plan(j)) for j in jobs] or [sum(n for _, n in self.plan(""))]
        mean = sum(per_job) / len(per_job)
        total = sum(per_job) if jobs else mean * p["total"]
        if not total:
            return None
        running = {job: r for job, _, _ in p["running"] if (r := self.running(job)) is not None}
        done = min(total, p["done"] * mean + sum(r[3] for r in running.values()))
        now, eta = time.time(), None
        if self._first is None and running:
            self._first = (now, done)
        elif self._first is not None and done > self._first[1] and now > self._first[0]:
            eta = (total - done) / ((done - self._first[1]) / (now - self._first[0]))
        return {"done": done, "total": total, "eta": eta, "jobs": running}


def _minutes(seconds: float) -> str:
    """``_minutes(42) == "<1m"``, ``_minutes(125) == "2m"``, ``_minutes(3900) == "1h05m"``."""
    m = int(seconds) // 60
    return "<1m" if m < 1 else (f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m")


def _format_progress(spec: SweepSpec, p: dict, started: float, steps: dict | None = None) -> str:
    """The progress line: trials done, each running job with its stage and step, the sweep's training steps,
    elapsed time and the ETA (from the rate of steps; before any, from the mean duration of finished trials).

    ``[quickstart] 1/6 done (0 failed, 0 pruned) | running: lm_lm-seed0 (pretrain 340/500, 2m) | steps
    1,840/6,600 (28%) | elapsed 3m | ETA ~7m``"""
    now = datetime.now()
    jobs = (steps or {}).get("jobs", {})

    def running(job: str, t0) -> str:
        parts = [f"{jobs[job][0]} {jobs[job][1]}/{jobs[job][2]}"] if job in jobs else []
        if t0:
            parts.append(_minutes((now - t0).total_seconds()))
        return f"{job} ({', '.join(parts)})" if parts else job

    line = (f"[{spec.study}] {p['done']}/{p['total']} done ({p['failed']} failed, {p['pruned']} pruned) | running: "
            + (", ".join(running(job, t0) for job, _, t0 in p["running"]) or "-"))
    eta = "?"
    if steps:
        done, total = int(steps["done"]), int(steps["total"])
        line += f" | steps {done:,d}/{total:,d} ({100 * done / total:.0f}%)"
        if steps["eta"] is not None:
            eta = "~" + _minutes(steps["eta"])
    if eta == "?" and p["mean_duration"] is not None:
        parallel = max(1, len(p["running"]))
        eta = "~" + _minutes(p["mean_duration"] * max(0, p["total"] - p["done"]) / parallel)
    if p["done"] == p["total"]:
        eta = "0m"
    return f"{line} | elapsed {_minutes(time.time() - started)} | ETA {eta}"


def run_sweep(sweep: str | Path, storage: str | None = None, devices: str | list[int] | None = None,
              devices_per_trial: int = 1, workers: int = 1, runner: Callable | str | None = None,
              out_dir: str | Path = "runs/sweeps", heartbeat_interval: float = 30, grace_period: float | None = None,
              retry_failed: bool = False, poll: float = 1.0, log_every: float = 30.0) -> dict:
    """Run (or continue) a sweep with local worker processes; returns the final progress counts plus
    ``exit_codes`` of the workers, the ``study`` name and the ``logs`` folder. Everything is validated before
    any worker starts: with t5lit's pipeline as the runner, every row as a whole experiment; with a runner of
    your own, every row resolved. ``grace_period``: seconds without a heartbeat before a running trial is
    lost (default: 1.75 heartbeat intervals)."""
    # Imported here, not at module level: ``python -m t5lit.sweep.worker`` imports this package (and so this
    # module) first, and runpy warns when the module it is about to run is already in sys.modules.
    from t5lit.sweep.worker import DEFAULT_RUNNER, PARENT_ENV, runner_ref

    ref = runner_ref(runner)
    spec = load_sweep(sweep, schema=ref == DEFAULT_RUNNER)
    check_sweep(spec, deep=spec.schema)  # every row as a run would check it, before any worker starts
    groups = device_groups(devices, devices_per_trial, workers)  # before any file is created
    out_dir = Path(out_dir).resolve()
    url = storage or default_storage(out_dir, spec.study)
    store = StudyStorage(url, heartbeat_interval, grace_period)
    study = open_study(spec, store, retry_failed=retry_failed, report=lambda line: print(line, flush=True))
    logs = out_dir / spec.study / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env_path = os.pathsep.join(p for p in [os.environ.get("PYTHONPATH", ""), *sys.path] if p)
    host, procs = socket.gethostname(), []
    with _stop_signals():
        try:
            for i, group in enumerate(groups):
                env = {**os.environ, "PYTHONPATH": env_path, PARENT_ENV: str(os.getpid())}
                args = [sys.executable, "-m", "t5lit.sweep.worker", "--sweep", str(Path(sweep).resolve()),
                        "--storage", url, "--out", str(out_dir), "--runner", ref, "--name", f"w{i}",
                        "--heartbeat", str(store.heartbeat_interval), "--grace", str(store.grace_period)]
                if group is not None:
                    env["CUDA_VISIBLE_DEVICES"] = group
                    args += ["--devices-per-trial", str(devices_per_trial)]
                elif "OMP_NUM_THREADS" not in os.environ:  # CPU workers share the cores instead of oversubscribing
                    env["OMP_NUM_THREADS"] = str(cpu_threads(len(groups)))
                with open(logs / f"{host}-w{i}.log", "a") as f:  # own process group: killed whole (DDP ranks too)
                    procs.append(subprocess.Popen(args, env=env, stdout=f, stderr=subprocess.STDOUT,
                                                  start_new_session=True))
            where = "devices " + " | ".join(g for g in groups if g) if devices else "CPU"
            print(f"[{spec.study}] {len(procs)} worker(s) on {where}; storage {url}; logs in {logs}", flush=True)
            final = _watch(spec, study, store, procs, host, poll, log_every, out_dir)
        except BaseException as err:
            _kill(procs)
            with contextlib.suppress(Exception):  # the storage itself may be what failed
                jobs = fail_lost(study, spec, store, {f"{host}:{p.pid}" for p in procs})
                why = (str(err) if isinstance(err, Interrupted) else "SIGINT" if isinstance(err, KeyboardInterrupt)
                       else type(err).__name__)
                print(f"[{spec.study}] stopped ({why}): {len(procs)} worker(s) killed"
                      + (f"; {', '.join(jobs)} will resume on the next run" if jobs else ""), flush=True)
            raise
    codes = [p.returncode for p in procs]
    if any(codes):
        print(f"[{spec.study}] worker exit codes {codes}; see {logs}. Run the same command to continue.", flush=True)
    return {**final, "exit_codes": codes, "study": spec.study, "logs": str(logs)}


def _watch(spec: SweepSpec, study, store: StudyStorage, procs: list[subprocess.Popen], host: str, poll: float,
           log_every: float, out_dir: Path | None = None) -> dict:
    """Print progress until every worker has exited: a line when a trial starts or ends or a running one enters
    another stage, and every ``log_every`` seconds (steps and ETA); re-queue the trial of a worker seen dying,
    and every quarter heartbeat interval those whose heartbeat went stale. Returns the final progress."""
    started, last_key, last_time, next_check, reaped = time.time(), None, 0.0, 0.0, set()
    steps = StepProgress(spec, out_dir) if out_dir is not None else None
    while True:
        time.sleep(poll)
        for i, p in enumerate(procs):
            if p.poll() is None or i in reaped:
                continue
            reaped.add(i)
            if p.returncode != 0:
                jobs = fail_lost(study, spec, store, {f"{host}:{p.pid}"})
                print(f"[{spec.study}] worker w{i} (pid {p.pid}) {_death(p.returncode)}"
                      + (f"; {', '.join(jobs)} back in the queue" if jobs else ""), flush=True)
        if len(reaped) == len(procs):
            break
        if time.time() >= next_check:
            for job in fail_lost(study, spec, store):
                print(f"[{spec.study}] {job}: its worker stopped beating; back in the queue", flush=True)
            next_check = time.time() + store.heartbeat_interval / 4
        now = progress(study, spec)
        measured = steps.measure(now) if steps is not None else None
        key = (now["done"], now["failed"], now["pruned"],
               tuple((job, (measured or {}).get("jobs", {}).get(job, ("",))[0]) for job, _, _ in now["running"]))
        if key != last_key or time.time() - last_time > log_every:
            print(_format_progress(spec, now, started, measured), flush=True)
            last_key, last_time = key, time.time()
    final = progress(study, spec)
    key = (final["done"], final["failed"], final["pruned"], ())
    if key != last_key:
        print(_format_progress(spec, final, started, steps.measure(final) if steps is not None else None), flush=True)
    return final


def _death(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return {75: "exited: another worker declared its trial lost (stale heartbeat)",
            70: "exited: its supervisor was gone"}.get(code, f"exited with code {code}")


def _kill(procs: list[subprocess.Popen]) -> None:
    """SIGKILL the process groups of the workers still running (each worker with its DDP ranks), and reap them."""
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=30)


@contextlib.contextmanager
def _stop_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP raise ``Interrupted`` (as Ctrl-C raises KeyboardInterrupt) while the supervisor runs,
    so that it stops its workers first; only where signals can be handled (the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise Interrupted(signum)

    names = [n for n in STOP_SIGNALS if hasattr(signal, n)]
    old = {n: signal.signal(getattr(signal, n), stop) for n in names}
    try:
        yield
    finally:
        for n, handler in old.items():
            signal.signal(getattr(signal, n), handler)
