"""Running a sweep: one worker process per GPU (or per group of K GPUs), or N on CPU, all on one study.

``run_sweep`` validates the sweep file, opens the storage and the study (enqueueing every job), starts the
workers (``python -m t5lit.sweep.worker``, CUDA_VISIBLE_DEVICES set per worker, logs under
``<out>/<study>/logs/``) and prints progress until they exit. Each worker loops: claim the next trial
(study.claim_next), run it with a heartbeat, record the outcome:

- results -> COMPLETE with the sweep's metric as value; summary, scores and val_curves as user attrs;
- ``optuna.TrialPruned`` -> PRUNED;
- ``t5lit.pipeline.TrialFailed`` (a NaN loss) or any other exception -> FAIL with ``failure`` = reason;
- the worker dies -> its heartbeat goes stale, a live worker fails the trial and enqueues a retry of the
  same job, which resumes from the same run directory ``<out>/<study>/<job>/``.

A worker whose own trial was declared lost (a stalled heartbeat) exits at once, so two processes never
write one run directory; an flock on the run directory guards the same on one machine.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib
import json
import logging
import math
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
import zlib
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from t5lit.registry import ConfigError
from t5lit.sweep.spec import SweepSpec, load_sweep
from t5lit.sweep.study import StudyStorage, _pruner, _sampler, claim_next, default_storage, open_study, progress

log = logging.getLogger("t5lit.sweep")
DEFAULT_RUNNER = "t5lit.pipeline:run_experiment"
FOLLOWER_ENV = "T5LIT_SWEEP_RUN"  # rank > 0 processes of a DDP trial follow rank 0's run through this
DDP_ENV = (FOLLOWER_ENV, "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def runner_ref(runner: Callable | str | None) -> str:
    """``"module:function"`` for a runner, so worker processes can import it."""
    if runner is None:
        return DEFAULT_RUNNER
    if isinstance(runner, str):
        return runner
    module, name = getattr(runner, "__module__", None), getattr(runner, "__qualname__", "")
    if not module or module == "__main__" or "<locals>" in name:
        raise ConfigError(f"runner {runner!r} must be a module-level function importable by worker processes")
    return f"{module}:{name}"


def load_runner(ref: str) -> Callable:
    module, _, name = ref.partition(":")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


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


def metric_value(results: dict, metric: str) -> float | None:
    """A dotted path into results (``summary.GLUE``); ``summary.average`` defaults to the mean of the
    summary columns, the table's Average. None when absent or not a finite number."""
    node: Any = results
    for key in metric.split("."):
        node = node.get(key) if isinstance(node, dict) else None
    if node is None and metric == "summary.average":
        values = [v for v in (results.get("summary") or {}).values() if isinstance(v, (int, float))]
        node = sum(values) / len(values) if values else None
    if not isinstance(node, (int, float)) or not math.isfinite(node):
        return None
    return float(node)


class Heartbeat:
    """Beats for one trial every ``interval`` seconds in a thread; calls ``on_lost`` if another worker
    has meanwhile declared the trial lost (its state is no longer RUNNING)."""

    def __init__(self, store: StudyStorage, trial_id: int, on_lost: Callable[[TrialState], None]):
        self.store, self.trial_id, self.on_lost = store, trial_id, on_lost
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"heartbeat-{trial_id}")

    def _run(self) -> None:
        while not self._stop.wait(self.store.heartbeat_interval):
            try:
                state = self.store.storage.get_trial(self.trial_id).state
                if state != TrialState.RUNNING:
                    if not self._stop.is_set():
                        self.on_lost(state)
                    return
                self.store.beat(self.trial_id)
            except Exception as err:  # a storage hiccup: keep trying until the grace period decides
                log.warning("heartbeat for trial id %d failed: %s", self.trial_id, err)

    def __enter__(self) -> Heartbeat:
        self.store.beat(self.trial_id)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


@contextlib.contextmanager
def run_dir_lock(run_dir: Path):
    """An flock on the run directory for the trial's duration (released by the OS if the worker dies)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ".sweep.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _lost(trial_number: int) -> Callable[[TrialState], None]:
    def on_lost(state: TrialState) -> None:
        log.error("trial %d is %s: another worker declared it lost (stale heartbeat); exiting so that two "
                  "processes never write one run directory", trial_number, state.name)
        os._exit(75)
    return on_lost


def trial_config(spec: SweepSpec, trial: optuna.Trial, devices_per_trial: int | None) -> tuple[dict, str]:
    """The resolved experiment for a claimed trial and its job (run-directory) name."""
    attrs = trial.user_attrs
    overrides = spec.row(attrs["row"]).overrides if spec.kind == "grid" else dict(trial.params)
    cfg = spec.experiment(overrides, attrs["seed"], attrs["job"])
    if devices_per_trial:  # a GPU worker: all of its CUDA_VISIBLE_DEVICES for this trial (DDP when > 1)
        trainer = cfg.setdefault("trainer", {}) or {}
        trainer.update(devices=devices_per_trial, accelerator="gpu")
        if devices_per_trial > 1:
            trainer.setdefault("strategy", "ddp")
        cfg["trainer"] = trainer
    return cfg, attrs["job"]


def run_trial(study: optuna.Study, spec: SweepSpec, store: StudyStorage, trial: optuna.Trial, runner: Callable,
              out_dir: Path, devices_per_trial: int | None = None, runner_name: str = DEFAULT_RUNNER) -> TrialState:
    """Run one claimed trial to its end and record the outcome in the study."""
    from t5lit.pipeline import TrialFailed

    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    cfg, job = trial_config(spec, trial, devices_per_trial)
    run_dir = out_dir / spec.study / job
    log.info("trial %d: %s (attempt %d) in %s", trial.number, job, trial.user_attrs.get("attempt", 1), run_dir)
    state, value, failure, results = TrialState.FAIL, None, None, None
    # Lightning's DDP launcher leaves LOCAL_RANK etc. in this process's environment; the next trial must
    # launch its own rank > 0 processes again, so the environment is restored after each trial.
    saved_env = {k: os.environ.get(k) for k in DDP_ENV}
    with run_dir_lock(run_dir), Heartbeat(store, trial._trial_id, _lost(trial.number)):
        pruning = spec.kind == "search" and spec.pruner != "none"
        os.environ[FOLLOWER_ENV] = json.dumps({"cfg": cfg, "run_dir": str(run_dir), "runner": runner_name,
                                               "pruning": pruning})
        try:
            results = runner(cfg, run_dir, trial=trial if pruning else None)
        except optuna.TrialPruned as err:
            state = TrialState.PRUNED
            log.info("trial %d pruned: %s", trial.number, err)
        except TrialFailed as err:
            failure = f"TrialFailed: {err}"
        except Exception as err:
            failure = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
            log.error("trial %d raised:\n%s", trial.number, traceback.format_exc())
        finally:
            for key, val in saved_env.items():
                if val is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = val
    if results is not None:
        for key in ("summary", "scores", "val_curves"):
            trial.set_user_attr(key, results.get(key, {}))
        value = metric_value(results, spec.metric)
        if value is None:
            failure = f"results have no finite {spec.metric} (summary: {sorted(results.get('summary') or {})})"
        else:
            state = TrialState.COMPLETE
    trial.set_user_attr("run_dir", str(run_dir))
    if failure is not None:
        trial.set_user_attr("failure", failure)
        log.warning("trial %d failed: %s", trial.number, failure)
    study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
    return state


def work(spec: SweepSpec, store: StudyStorage, runner: Callable, out_dir: str | Path, name: str = "w0",
         devices_per_trial: int | None = None, runner_name: str = DEFAULT_RUNNER) -> int:
    """A worker's loop: claim, run, record, until no job is left to start and none is running
    (it keeps watching running trials, to take over one whose worker dies). Returns trials run."""
    salt = zlib.crc32(f"{socket.gethostname()}:{name}:{os.getpid()}".encode())
    study = optuna.load_study(study_name=spec.study, storage=store.storage, sampler=_sampler(spec, salt),
                              pruner=_pruner(spec))
    n = 0
    while True:
        trial = claim_next(study, spec, store)
        if trial is None:
            if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
                return n
            time.sleep(max(0.5, store.heartbeat_interval / 2))
            continue
        run_trial(study, spec, store, trial, runner, Path(out_dir), devices_per_trial, runner_name)
        n += 1


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
    ``exit_codes`` of the workers. Everything is validated before any worker starts."""
    spec = load_sweep(sweep)
    ref = runner_ref(runner)
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


def _follow(env: str) -> None:
    """A rank > 0 process of a DDP trial (Lightning's launcher re-runs this module): run rank 0's trial
    alongside it; Lightning joins the processes inside each fit."""
    from t5lit.callbacks import RANK_FOLLOWER_TRIAL

    job = json.loads(env)
    try:
        load_runner(job["runner"])(job["cfg"], Path(job["run_dir"]),
                                   trial=RANK_FOLLOWER_TRIAL if job.get("pruning") else None)
    except optuna.TrialPruned:  # rank 0 decided and records it; this rank stops with it
        pass


def main(argv: list[str] | None = None) -> None:
    if os.environ.get(FOLLOWER_ENV) and int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0"))) > 0:
        _follow(os.environ[FOLLOWER_ENV])
        return
    ap = argparse.ArgumentParser(prog="python -m t5lit.sweep.worker", description="one sweep worker")
    ap.add_argument("--sweep", required=True)
    ap.add_argument("--storage", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--runner", default=DEFAULT_RUNNER)
    ap.add_argument("--name", default="w0")
    ap.add_argument("--devices-per-trial", type=int, default=None)
    ap.add_argument("--heartbeat", type=int, default=30)
    ap.add_argument("--grace", type=int, default=120)
    ns = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {ns.name} %(levelname)s %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        import torch

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    spec = load_sweep(ns.sweep, check_rows=False)
    store = StudyStorage(ns.storage, ns.heartbeat, ns.grace)
    n = work(spec, store, load_runner(ns.runner), ns.out, ns.name, ns.devices_per_trial, ns.runner)
    log.info("no trials left; ran %d", n)


if __name__ == "__main__":
    main()
