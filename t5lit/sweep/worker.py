"""One sweep worker process (``python -m t5lit.sweep.worker``): claim a trial, run it, record it, repeat.

The supervisor (``t5lit.sweep.supervisor.run_sweep``) starts one such process per GPU (or group of GPUs) or
N on CPU. Each loops (``work``): claim the next trial (study.claim_next), run it with a heartbeat and an
flock on its run directory (``run_trial``), record the outcome:

- results -> COMPLETE with the sweep's metric as value; summary, scores and val_curves as user attrs;
- ``optuna.TrialPruned`` -> PRUNED;
- ``t5lit.pipeline.TrialFailed`` (a NaN loss) or any other exception -> FAIL with ``failure`` = reason;
- the worker dies -> its heartbeat goes stale, a live worker fails the trial and enqueues a retry of the
  same job, which resumes from the same run directory ``<out>/<study>/<job>/``.

A worker whose own trial was declared lost (a stalled heartbeat) exits at once, so two processes never
write one run directory; the flock on the run directory guards the same on one machine.

A worker dies with the supervisor that started it (``die_with_parent``: Linux's parent-death signal,
SIGKILL, armed first thing in ``main``; a watchdog thread elsewhere), and a DDP rank > 0 dies with its
worker the same way, so no process outlives the sweep that started it. Nothing is lost by the hard kill:
run-directory and study locks are flocks the OS releases, a torn journal record is repaired by the next
reader (``t5lit.sweep.study.JournalFile``), and the trial is retried from its last checkpoint.

A trial on several devices runs under DDP with this process as rank 0; Lightning's launcher re-runs this
module for ranks > 0, and ``main`` hands those to ``t5lit.sweep.follower``. The runner is named
``"module:function"`` (``runner_ref``) so that every process can import it (``load_runner``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
import traceback
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from t5lit.io import file_lock
from t5lit.registry import ConfigError
from t5lit.sweep.follower import DDP_ENV, announce, follow, followed_job
from t5lit.sweep.spec import SweepSpec, load_sweep
from t5lit.sweep.study import StudyStorage, _pruner, _sampler, claim_next, config_digest, job_experiment

log = logging.getLogger("t5lit.sweep")
DEFAULT_RUNNER = "t5lit.pipeline:run_experiment"
PARENT_ENV = "T5LIT_SWEEP_PARENT"  # the pid a sweep process must die with (its supervisor, or rank 0)
ORPHANED = 70  # the exit code of a process that found its parent already gone


def die_with_parent() -> None:
    """Die (SIGKILL) when the process that started this one dies, when it says so in ``T5LIT_SWEEP_PARENT``;
    then name this process as the parent its own children (DDP ranks > 0) must die with.

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, then a check that the parent is still the one that started
    this process (it may have died before the call). Elsewhere: a thread that polls the parent's pid."""
    expected = os.environ.get(PARENT_ENV, "")
    if expected.isdigit():
        if sys.platform.startswith("linux"):
            import ctypes

            arg = ctypes.c_ulong
            ctypes.CDLL(None, use_errno=True).prctl(1, arg(signal.SIGKILL), arg(0), arg(0), arg(0))  # PR_SET_PDEATHSIG
        else:  # pragma: no cover - macOS and others
            def watch() -> None:
                while os.getppid() == int(expected):
                    time.sleep(1.0)
                os._exit(ORPHANED)

            threading.Thread(target=watch, daemon=True, name="parent-watch").start()
        if os.getppid() != int(expected):
            os._exit(ORPHANED)
    os.environ[PARENT_ENV] = str(os.getpid())


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
                self.store.beat(self.trial_id)  # first: a slow read of the study must not delay the beat
                state = self.store.storage.get_trial(self.trial_id).state
                if state != TrialState.RUNNING:
                    if not self._stop.is_set():
                        self.on_lost(state)
                    return
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
    """An flock on ``<run_dir>/.sweep.lock`` for the trial's duration (released by the OS if the worker dies);
    creates ``run_dir``."""
    with file_lock(run_dir / ".sweep"):
        yield


def _lost(trial_number: int) -> Callable[[TrialState], None]:
    def on_lost(state: TrialState) -> None:
        log.error("trial %d is %s: another worker declared it lost (stale heartbeat); exiting so that two "
                  "processes never write one run directory", trial_number, state.name)
        os._exit(75)
    return on_lost


def trial_config(spec: SweepSpec, trial: optuna.Trial, devices_per_trial: int | None) -> tuple[dict, str]:
    """The resolved experiment for a claimed trial and its job (run-directory) name; records the
    experiment's digest (``config``) so that a later run can tell that the sweep file changed it."""
    attrs = trial.user_attrs
    cfg = job_experiment(spec, attrs, trial.params)
    trial.set_user_attr("config", config_digest(cfg))
    if devices_per_trial:  # a GPU worker: all of its CUDA_VISIBLE_DEVICES for this trial (DDP when > 1)
        trainer = cfg.setdefault("trainer", {}) or {}
        trainer.update(devices=devices_per_trial, accelerator="gpu")
        if devices_per_trial > 1:
            trainer.setdefault("strategy", "ddp")
        cfg["trainer"] = trainer
    return cfg, attrs["job"]


def run_trial(study: optuna.Study, spec: SweepSpec, store: StudyStorage, trial: optuna.Trial, runner: Callable,
              out_dir: Path, devices_per_trial: int | None = None, runner_name: str = DEFAULT_RUNNER) -> TrialState:
    """Run one claimed trial to its end and record the outcome in the study. The heartbeat starts first, so
    that waiting for the run directory (or a slow config) never makes the trial look lost."""
    job = trial.user_attrs["job"]
    run_dir = out_dir / spec.study / job
    log.info("trial %d: %s (attempt %d) in %s", trial.number, job, trial.user_attrs.get("attempt", 1), run_dir)
    state, value, failure, results = TrialState.FAIL, None, None, None
    # Lightning's DDP launcher leaves LOCAL_RANK etc. in this process's environment; the next trial must
    # launch its own rank > 0 processes again, so the environment is restored after each trial.
    saved_env = {k: os.environ.get(k) for k in DDP_ENV}
    with Heartbeat(store, trial._trial_id, _lost(trial.number)), run_dir_lock(run_dir):
        pruning = spec.kind == "search" and spec.pruner != "none"
        try:
            cfg, _ = trial_config(spec, trial, devices_per_trial)  # a row gone from the sweep file fails here
            announce(cfg, run_dir, runner_name, pruning)
            results = runner(cfg, run_dir, trial=trial if pruning else None)
        except optuna.TrialPruned as err:
            state = TrialState.PRUNED
            log.info("trial %d pruned: %s", trial.number, err)
        except Exception as err:
            # t5lit.pipeline.TrialFailed (a NaN loss), without importing the pipeline (and torch) for a
            # runner of one's own: the class can only have been raised if its module was loaded.
            trial_failed = getattr(sys.modules.get("t5lit.pipeline"), "TrialFailed", None)
            if trial_failed is not None and isinstance(err, trial_failed):
                failure = f"TrialFailed: {err}"
            else:
                failure = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
                log.error("trial %d raised:\n%s", trial.number, traceback.format_exc())
        finally:
            for key, val in saved_env.items():
                if val is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = val
    if results is not None:
        for key in ("summary", "scores", "val_curves", "reported", "cost", "intervals"):
            trial.set_user_attr(key, results.get(key, {}))
        import json  # per-example scores for the report's paired bootstrap: in the study when small (a MySQL
        # TEXT holds 64 KB), else the report reads them from the run directory's results.json
        if len(json.dumps(results.get("examples") or {})) <= 60_000:
            trial.set_user_attr("examples", results.get("examples") or {})
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
    me = f"{socket.gethostname()}:{os.getpid()}"
    salt = zlib.crc32(f"{me}:{name}".encode())
    study = optuna.load_study(study_name=spec.study, storage=store.storage, sampler=_sampler(spec, salt),
                              pruner=_pruner(spec))
    n = 0
    while True:
        trial = claim_next(study, spec, store, worker=me)
        if trial is None:
            if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
                return n
            # Every quarter interval: a lost trial (no beat for LOST_AFTER intervals) is retried within two.
            time.sleep(store.heartbeat_interval / 4)
            continue
        run_trial(study, spec, store, trial, runner, Path(out_dir), devices_per_trial, runner_name)
        n += 1


def main(argv: list[str] | None = None) -> None:
    die_with_parent()  # first: a worker (or DDP rank > 0) never outlives the process that started it
    job = followed_job()
    if job is not None:  # a DDP rank > 0 re-run of this module by Lightning's launcher
        follow(job, load_runner(job["runner"]))
        return
    ap = argparse.ArgumentParser(prog="python -m t5lit.sweep.worker", description="one sweep worker")
    ap.add_argument("--sweep", required=True)
    ap.add_argument("--storage", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--runner", default=DEFAULT_RUNNER)
    ap.add_argument("--name", default="w0")
    ap.add_argument("--devices-per-trial", type=int, default=None)
    ap.add_argument("--heartbeat", type=float, default=30.0, help="seconds between a running trial's beats")
    ap.add_argument("--grace", type=float, default=None,
                    help="seconds without a beat before a trial is lost (default: 1.75 heartbeats)")
    ns = ap.parse_args(argv)
    from t5lit.logs import log_to_stream

    # each line once (Lightning's own handler removed), known-harmless warnings silenced
    log_to_stream(ns.name, lightning=ns.runner == DEFAULT_RUNNER)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    runner = load_runner(ns.runner)
    # A runner that loaded torch gets the thread count now; one that loads it later, from OMP_NUM_THREADS.
    if os.environ.get("OMP_NUM_THREADS", "").isdigit() and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    spec = load_sweep(ns.sweep, check_rows=False, schema=ns.runner == DEFAULT_RUNNER)
    store = StudyStorage(ns.storage, ns.heartbeat, ns.grace)
    n = work(spec, store, runner, ns.out, ns.name, ns.devices_per_trial, ns.runner)
    log.info("no trials left; ran %d", n)


if __name__ == "__main__":
    main()
