"""Running a sweep: validate it, open its study, start the worker processes, print progress until they exit.

``run_sweep`` validates the sweep file, opens the storage and the study (enqueueing every job), starts one
worker process per GPU (or per group of K GPUs, ``device_groups``) or N on CPU (sharing the cores,
``cpu_threads``): ``python -m t5lit.sweep.worker`` with CUDA_VISIBLE_DEVICES set per worker and logs under
``<out>/<study>/logs/``. It then prints one progress line whenever the counts change (and every
``log_every`` seconds) and returns the final counts with the workers' exit codes. What a worker does with
a trial is ``t5lit.sweep.worker``'s business; the supervisor never runs a trial itself, so several
supervisors (machines) can share one study.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from t5lit.registry import ConfigError
from t5lit.sweep.spec import SweepSpec, check_sweep, load_sweep
from t5lit.sweep.study import StudyStorage, default_storage, open_study, progress


def device_groups(devices: str | list[int] | None, per_trial: int, workers: int) -> list[str | None]:
    """CUDA_VISIBLE_DEVICES per worker: ``device_groups("0,1,2,3", 2, 1) == ["0,1", "2,3"]``; without
    devices, ``workers`` CPU workers that leave the environment as it is (``[None] * workers``)."""
    if not devices:
        if workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {workers}")
        return [None] * workers
    ids = [str(d).strip() for d in (devices.split(",") if isinstance(devices, str) else devices) if str(d).strip()]
    if per_trial < 1 or len(ids) % per_trial:
        raise ConfigError(f"--devices-per-trial {per_trial} must divide the {len(ids)} devices {','.join(ids)}")
    return [",".join(ids[i:i + per_trial]) for i in range(0, len(ids), per_trial)]


def cpu_threads(workers: int) -> int:
    """Intra-op threads per CPU worker: the usable cores split evenly (``cpu_threads(2) == 1`` on 2 cores)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, workers))


def _format_progress(spec: SweepSpec, p: dict, started: float) -> str:
    now = datetime.now()
    running = ", ".join(f"{job} ({int((now - t0).total_seconds()) // 60}m)" if t0 else job
                        for job, _, t0 in p["running"]) or "-"
    eta = "?"
    if p["mean_duration"] is not None:
        parallel = max(1, len(p["running"]))
        eta = f"{int(p['mean_duration'] * max(0, p['total'] - p['done']) / parallel / 60)}m"
    return (f"[{spec.study}] {p['done']}/{p['total']} done ({p['failed']} failed, {p['pruned']} pruned) | "
            f"running: {running} | elapsed {int(time.time() - started) // 60}m | ETA {eta}")


def run_sweep(sweep: str | Path, storage: str | None = None, devices: str | list[int] | None = None,
              devices_per_trial: int = 1, workers: int = 1, runner: Callable | str | None = None,
              out_dir: str | Path = "runs/sweeps", heartbeat_interval: int = 30, grace_period: int = 120,
              retry_failed: bool = False, poll: float = 1.0, log_every: float = 30.0) -> dict:
    """Run (or continue) a sweep with local worker processes; returns the final progress counts plus
    ``exit_codes`` of the workers. Everything is validated before any worker starts: with t5lit's pipeline as
    the runner, every row as a whole experiment; with a runner of your own, every row resolved."""
    # Imported here, not at module level: ``python -m t5lit.sweep.worker`` imports this package (and so this
    # module) first, and runpy warns when the module it is about to run is already in sys.modules.
    from t5lit.sweep.worker import DEFAULT_RUNNER, runner_ref

    ref = runner_ref(runner)
    spec = load_sweep(sweep, schema=ref == DEFAULT_RUNNER)
    check_sweep(spec, deep=spec.schema)  # every row as a run would check it, before any worker starts
    out_dir = Path(out_dir).resolve()
    url = storage or default_storage(out_dir, spec.study)
    store = StudyStorage(url, heartbeat_interval, grace_period)
    study = open_study(spec, store, retry_failed=retry_failed)
    groups = device_groups(devices, devices_per_trial, workers)
    logs = out_dir / spec.study / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env_path = os.pathsep.join(p for p in [os.environ.get("PYTHONPATH", ""), *sys.path] if p)
    procs = []
    for i, group in enumerate(groups):
        env = {**os.environ, "PYTHONPATH": env_path}
        args = [sys.executable, "-m", "t5lit.sweep.worker", "--sweep", str(Path(sweep).resolve()), "--storage", url,
                "--out", str(out_dir), "--runner", ref, "--name", f"w{i}", "--heartbeat", str(heartbeat_interval),
                "--grace", str(grace_period)]
        if group is not None:
            env["CUDA_VISIBLE_DEVICES"] = group
            args += ["--devices-per-trial", str(devices_per_trial)]
        elif "OMP_NUM_THREADS" not in os.environ:  # CPU workers share the cores instead of oversubscribing
            env["OMP_NUM_THREADS"] = str(cpu_threads(len(groups)))
        with open(logs / f"{socket.gethostname()}-w{i}.log", "a") as f:
            procs.append(subprocess.Popen(args, env=env, stdout=f, stderr=subprocess.STDOUT))
    where = "devices " + " | ".join(g for g in groups if g) if devices else "CPU"
    print(f"[{spec.study}] {len(procs)} worker(s) on {where}; storage {url}; logs in {logs}", flush=True)
    started, last_line, last_time = time.time(), "", 0.0
    while any(p.poll() is None for p in procs):
        time.sleep(poll)
        line = _format_progress(spec, progress(study, spec), started)
        if line.split(" | elapsed")[0] != last_line or time.time() - last_time > log_every:
            print(line, flush=True)
            last_line, last_time = line.split(" | elapsed")[0], time.time()
    final = progress(study, spec)
    line = _format_progress(spec, final, started)
    if line.split(" | elapsed")[0] != last_line:
        print(line, flush=True)
    codes = [p.returncode for p in procs]
    if any(codes):
        print(f"[{spec.study}] worker exit codes {codes}; see {logs}. Run the same command to continue.", flush=True)
    return {**final, "exit_codes": codes}
