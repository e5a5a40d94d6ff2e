"""The Optuna side of a sweep: storage, the study, which trial runs next, and lost-worker detection.

Storage: a journal file beside the runs (``<out>/<study>/<study>.journal``, one machine, any number of
worker processes) or an RDB URL (``postgresql://``, ``mysql://``; several machines, each started with the
same command). ``sqlite:///`` works too, on one machine.

The journal file is Optuna's (one JSON record per line) read and written through ``JournalFile``, which
never appends onto a record torn by a writer that died mid-write: every read and append happens under one
flock, and a torn last record found there (its writer is dead, or it would hold the lock) is cut off first
and reported in one line. No complete record is ever dropped, so no finished trial is lost.

Every decision about which trial runs next is taken under one lock per study (an flock beside the journal
or SQLite file, a PostgreSQL advisory lock, a MySQL named lock), so concurrent workers and machines never
enqueue a row twice or run one trial twice:

- a *job* is one run directory: ``<row>-seed<k>`` for a grid, ``trial<NNNN>-seed<k>`` for a search;
- a job's state is that of its latest trial: none -> enqueue it; WAITING / RUNNING / COMPLETE / PRUNED ->
  leave it; FAIL with a ``failure`` user attribute (a NaN loss, an exception) -> final, unless the run asks
  for ``retry_failed`` or the job's resolved experiment changed since (the sweep file was fixed); FAIL
  without one -> its worker was lost (killed, heartbeat stale), so a new attempt is enqueued with the same
  job and parameters (up to ``max_retries``), and it resumes from the job's run directory.

Lost workers: a running trial's worker beats every ``heartbeat_interval`` seconds; a trial whose last beat
is older than ``grace_period`` (default ``LOST_AFTER`` = 1.75 intervals) is failed by whoever looks next
(idle workers every quarter interval, the supervisor too), so a dead worker's trial is back in the queue
within two intervals of its death. A supervisor re-queues the trial of a worker it saw die at once.

Trial user attributes: job, seed, row (grid), attempt, worker (``host:pid``), config (a digest of the
resolved experiment), failure (reason), and from results.json (so a report needs only the storage): summary,
scores, val_curves, reported, cost, intervals and, when small enough, examples (per-example scores).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import warnings
import zlib
from collections.abc import Callable, Collection, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from t5lit.io import file_lock
from t5lit.registry import ConfigError
from t5lit.sweep.journal import JournalFile, check_journal
from t5lit.sweep.spec import SweepSpec, job_name

RDB_SCHEMES = ("postgresql", "mysql", "sqlite")
FINAL_OK = (TrialState.COMPLETE, TrialState.PRUNED)
LOST_AFTER = 1.75  # heartbeat intervals without a beat before a running trial counts as lost


def default_storage(out_dir: str | Path, study: str) -> str:
    """``runs/sweeps/t2/t2.journal``: the journal file next to the study's run directories."""
    return str(Path(out_dir) / study / f"{study}.journal")


def redact(url: str) -> str:
    """``postgresql://u:secret@h/db`` -> ``postgresql://u:***@h/db`` for messages."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}" if ":" in creds else url
    return url


def with_driver(url: str) -> str:
    """Pick an installed driver when the URL names none: SQLAlchemy 2.1 maps ``postgresql://`` to psycopg 3
    and ``mysql://`` to mysqlclient; fall back to psycopg2 / PyMySQL when only those are installed."""
    import importlib.util

    for scheme, default, fallback, driver in (("postgresql://", "psycopg", "psycopg2", "psycopg2"),
                                              ("mysql://", "MySQLdb", "pymysql", "pymysql")):
        if url.startswith(scheme) and importlib.util.find_spec(default) is None \
                and importlib.util.find_spec(fallback) is not None:
            return f"{scheme[:-3]}+{driver}://{url[len(scheme):]}"
    return url


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].split("+", 1)[0] if "://" in url else "journal"


class StudyStorage:
    """An opened storage plus the study-wide lock and the heartbeat for lost workers. ``grace_period``
    (seconds without a beat before a running trial is lost) defaults to ``LOST_AFTER`` heartbeat intervals."""

    def __init__(self, url: str, heartbeat_interval: float = 30, grace_period: float | None = None):
        self.url, self.kind = with_driver(url), _scheme(url)
        self.heartbeat_interval = float(heartbeat_interval)
        self.grace_period = float(grace_period or LOST_AFTER * self.heartbeat_interval)
        if self.kind not in ("journal", *RDB_SCHEMES):
            raise ConfigError(f"storage {redact(url)}: unknown scheme {self.kind!r}; valid: a journal file path, "
                              "postgresql://, mysql://, sqlite:///")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self.storage = self._open()
        except ConfigError:
            raise
        except Exception as err:  # driver errors: host down, bad password, missing database, no driver
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise ConfigError(f"cannot open sweep storage {redact(url)}: {first}") from None
        self._engine = None

    def _open(self):
        if self.kind == "journal":
            path = Path(self.url.removeprefix("journal:"))
            check_journal(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(JournalFile(path))
        # Optuna's own heartbeat for RDBs: the database's clock decides staleness, right across machines.
        return optuna.storages.RDBStorage(self.url, heartbeat_interval=self.heartbeat_interval,
                                          grace_period=self.grace_period,
                                          engine_kwargs={"pool_pre_ping": True})

    # -- the study-wide lock -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, study: str) -> Iterator[None]:
        """Held while deciding which trial runs next; released by the OS/database if the holder dies."""
        if self.kind in ("journal", "sqlite"):
            target = self.url.removeprefix("journal:") if self.kind == "journal" else self.url.split(":///", 1)[1]
            with file_lock(Path(f"{target}.{study}")):
                yield
            return
        import sqlalchemy

        if self._engine is None:
            self._engine = sqlalchemy.create_engine(self.url, poolclass=sqlalchemy.pool.NullPool)
        key = zlib.crc32(f"t5lit-sweep:{study}".encode())
        take, give = (("SELECT pg_advisory_lock(:k)", "SELECT pg_advisory_unlock(:k)") if self.kind == "postgresql"
                      else ("SELECT GET_LOCK(:k, 3600)", "SELECT RELEASE_LOCK(:k)"))
        arg = key if self.kind == "postgresql" else f"t5lit-sweep:{study}"[:64]
        with self._engine.connect() as conn:
            conn.execute(sqlalchemy.text(take), {"k": arg})
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text(give), {"k": arg})

    # -- heartbeats ----------------------------------------------------------------------------------------
    def _beat_file(self, trial_id: int) -> Path:
        return Path(self.url.removeprefix("journal:")).parent / "heartbeats" / f"trial-{trial_id}"

    def beat(self, trial_id: int) -> None:
        """Record that the worker running ``trial_id`` is alive."""
        if self.kind == "journal":
            path = self._beat_file(trial_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        else:
            self.storage.record_heartbeat(trial_id)

    def last_beat(self, t: FrozenTrial) -> float | None:
        """When a running trial's worker last beat (journal storages; None for RDBs, whose clock is theirs)."""
        if self.kind != "journal":
            return None
        path = self._beat_file(t._trial_id)
        with contextlib.suppress(FileNotFoundError):
            return path.stat().st_mtime
        return (t.datetime_start or datetime.now()).timestamp()

    def fail_stale(self, study: optuna.Study) -> list[int]:
        """Mark RUNNING trials whose heartbeat is older than the grace period as FAIL (no ``failure``
        attribute: the worker was lost); returns their numbers."""
        if self.kind != "journal":
            running = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
            trials = study.get_trials(deepcopy=False)
            return [n for n in running if trials[n].state == TrialState.FAIL]
        now = time.time()
        stale = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                 if now - self.last_beat(t) > self.grace_period]
        return [t.number for t in stale if self._fail(t)]

    def _fail(self, t: FrozenTrial) -> bool:
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            return self.storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        return False


def _sampler(spec: SweepSpec, salt: int = 0) -> optuna.samplers.BaseSampler:
    """The search's sampler. Each worker passes its own ``salt``: equal seeds would make workers propose
    the same random start-up points."""
    seed = (spec.seeds[0] * 1_000_003 + salt) % 2**32
    if spec.kind == "grid" or spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.sampler == "grid":
        return optuna.samplers.GridSampler({p.name: p.grid_values() for p in spec.space}, seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _pruner(spec: SweepSpec) -> optuna.pruners.BasePruner:
    if spec.kind == "search" and spec.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)
    if spec.kind == "search" and spec.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def config_digest(cfg: dict) -> str:
    """A short digest of a resolved experiment: recorded with each attempt, so that a run can tell that a
    failed row's definition changed since (and run it again)."""
    try:
        text = json.dumps(cfg, sort_keys=True, default=str)
    except TypeError:  # keys of mixed types
        text = repr(cfg)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def job_experiment(spec: SweepSpec, attrs: dict, params: dict | None = None) -> dict:
    """A job's resolved experiment as the sweep file defines it now: its row's overrides (a grid) or its
    trial's ``params`` (a search), at its seed, named after the job (its run directory)."""
    overrides = spec.row(attrs["row"]).overrides if spec.kind == "grid" else dict(params or {})
    return spec.experiment(overrides, attrs["seed"], attrs["job"])


def open_study(spec: SweepSpec, store: StudyStorage, retry_failed: bool = False,
               report: Callable[[str], None] | None = None) -> optuna.Study:
    """Create (or load) the sweep's study and enqueue every job that needs a trial, under the study lock.
    Failed jobs get another attempt with ``retry_failed``, and grid rows whose resolved experiment changed
    since they failed get one anyway; ``report`` receives a line naming them."""
    with store.lock(spec.study):
        study = optuna.create_study(storage=store.storage, study_name=spec.study, direction=spec.direction,
                                    sampler=_sampler(spec), pruner=_pruner(spec), load_if_exists=True)
        if study.direction.name.lower() != spec.direction:
            raise ConfigError(f"study {spec.study!r} exists with direction {study.direction.name.lower()}, "
                              f"the sweep file says {spec.direction}; use another study name")
        old = study.user_attrs.get("sweep")
        if old and old.get("kind") != spec.kind:
            raise ConfigError(f"study {spec.study!r} exists as a {old['kind']} sweep; this file is a {spec.kind}")
        study.set_user_attr("sweep", {**spec.describe(), "max_retries": spec.max_retries})
        failed = {job: ts[-1] for job, ts in jobs_of(study).items() if is_final_failure(ts, spec.max_retries)}
        changed = [job for job, t in failed.items() if spec.kind == "grid" and t.user_attrs.get("config")
                   and t.user_attrs.get("row") in {r.name for r in spec.rows}
                   and config_digest(job_experiment(spec, t.user_attrs)) != t.user_attrs["config"]]
        retry = set(failed) if retry_failed else set(changed)
        again = [job for job in top_up(study, spec, retry=retry) if job in retry]
    if report and again:
        why = "--retry-failed" if retry_failed else "changed in the sweep file since they failed"
        report(f"[{spec.study}] retrying {len(again)} failed trial(s) ({why}): {', '.join(again)}")
    return study


def jobs_of(study: optuna.Study) -> dict[str, list[FrozenTrial]]:
    """Trials grouped by job, oldest attempt first."""
    out: dict[str, list[FrozenTrial]] = {}
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if "job" in t.user_attrs:
            out.setdefault(t.user_attrs["job"], []).append(t)
    return out


def is_lost(t: FrozenTrial) -> bool:
    """A FAIL left by a worker that died (no recorded reason)."""
    return t.state == TrialState.FAIL and "failure" not in t.user_attrs


def is_final_failure(attempts: list[FrozenTrial], max_retries: int) -> bool:
    """A job that will not run again by itself: its latest attempt failed with a reason, or its workers were
    lost more than ``max_retries`` times."""
    t = attempts[-1]
    return t.state == TrialState.FAIL and (not is_lost(t) or sum(map(is_lost, attempts)) > max_retries)


def failure_of(attempts: list[FrozenTrial]) -> str:
    """Why a job's latest attempt failed, in a few words."""
    t = attempts[-1]
    if not is_lost(t):
        return t.user_attrs.get("failure", "?")
    return f"its worker died {sum(map(is_lost, attempts))} time(s)"


def top_up(study: optuna.Study, spec: SweepSpec, retry: Collection[str] = ()) -> list[str]:
    """Enqueue the jobs that need a trial (call under the study lock): new jobs, lost ones (up to
    ``max_retries``), and the failed jobs named in ``retry``; returns their names."""
    jobs = jobs_of(study)
    wanted: list[str] = spec.jobs() if spec.kind == "grid" else list(jobs)
    added = []
    for job in wanted:
        attempts = jobs.get(job, [])
        latest = attempts[-1] if attempts else None
        if latest is not None:
            lost = sum(is_lost(t) for t in attempts)
            again = (is_lost(latest) and lost <= spec.max_retries) or (
                job in retry and latest.state == TrialState.FAIL)
            if not again:
                continue
        attrs: dict[str, Any] = {"job": job, "attempt": len(attempts) + 1}
        if spec.kind == "grid":
            row, seed = job.rsplit("-seed", 1)
            attrs.update(row=row, seed=int(seed))
            study.enqueue_trial({}, user_attrs=attrs)
        else:
            attrs["seed"] = latest.user_attrs["seed"]
            study.enqueue_trial(dict(latest.params), user_attrs=attrs)
        added.append(job)
    return added


def fail_lost(study: optuna.Study, spec: SweepSpec, store: StudyStorage, workers: Collection[str] = ()) -> list[str]:
    """Under the study lock: fail the running trials of ``workers`` (``host:pid`` of processes known dead)
    and those whose heartbeat is stale, and enqueue their retries; returns the jobs failed."""
    with store.lock(spec.study):
        jobs = [t.user_attrs.get("job", "?") for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                if t.user_attrs.get("worker") in workers and store._fail(t)]
        stale = set(store.fail_stale(study))
        jobs += [t.user_attrs.get("job", "?") for t in study.get_trials(deepcopy=False) if t.number in stale]
        if jobs:
            top_up(study, spec)
    return jobs


def claim_next(study: optuna.Study, spec: SweepSpec, store: StudyStorage,
               worker: str | None = None) -> optuna.Trial | None:
    """The next trial for this worker (``host:pid``), already RUNNING and heartbeating, or None when nothing
    is left to start. Lost workers' trials are failed and re-enqueued first."""
    import socket

    worker = worker or f"{socket.gethostname()}:{os.getpid()}"
    with store.lock(spec.study):
        store.fail_stale(study)
        top_up(study, spec)
        for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            if store.storage.set_trial_state_values(t._trial_id, TrialState.RUNNING):
                store.beat(t._trial_id)
                trial = optuna.Trial(study, t._trial_id)
                trial.set_user_attr("worker", worker)
                for p in spec.space:  # materialize an enqueued retry's fixed parameters
                    p.suggest(trial)
                return trial
        if spec.kind == "search" and len(jobs_of(study)) < spec.n_trials:
            trial = study.ask()
            store.beat(trial._trial_id)
            trial.set_user_attr("worker", worker)
            for p in spec.space:
                p.suggest(trial)
            trial.set_user_attr("job", job_name(f"trial{trial.number:04d}", spec.seeds[0]))
            trial.set_user_attr("seed", spec.seeds[0])
            trial.set_user_attr("attempt", 1)
            return trial
    return None


def progress(study: optuna.Study, spec: SweepSpec) -> dict[str, Any]:
    """Counts by each job's latest trial: complete, pruned, failed (final), running, and the total;
    ``failed_jobs`` lists (job, reason) of the failed ones."""
    counts = {"complete": 0, "pruned": 0, "failed": 0, "running": [], "total": spec.total_trials(),
              "failed_jobs": []}
    durations = []
    for job, attempts in jobs_of(study).items():
        t = attempts[-1]
        if t.state == TrialState.COMPLETE:
            counts["complete"] += 1
        elif t.state == TrialState.PRUNED:
            counts["pruned"] += 1
        elif is_final_failure(attempts, spec.max_retries):
            counts["failed"] += 1
            counts["failed_jobs"].append((job, failure_of(attempts)))
        elif t.state == TrialState.RUNNING:
            counts["running"].append((job, t.user_attrs.get("worker", "?"), t.datetime_start))
        if t.state in FINAL_OK and t.datetime_start and t.datetime_complete:
            durations.append((t.datetime_complete - t.datetime_start).total_seconds())
    counts["done"] = counts["complete"] + counts["pruned"] + counts["failed"]
    counts["mean_duration"] = sum(durations) / len(durations) if durations else None
    return counts


def open_from_url(study: str, storage: str | None, out_dir: str | Path) -> optuna.Study:
    """Load an existing study by name (for reports and status); a one-line error, and nothing created, when
    the journal or SQLite file or the study does not exist."""
    url = storage or default_storage(out_dir, study)
    kind = _scheme(url)
    if kind == "journal" and not Path(url.removeprefix("journal:")).is_file():
        raise ConfigError(f"no sweep journal at {url}; run the sweep first or pass --storage")
    if kind == "sqlite" and ":///" in url and not Path(url.split(":///", 1)[1]).is_file():
        raise ConfigError(f"no sweep database at {url}; run the sweep first or pass --storage")
    store = StudyStorage(url)
    try:
        return optuna.load_study(study_name=study, storage=store.storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(store.storage)]
        raise ConfigError(f"no study {study!r} in {redact(url)}; studies there: {', '.join(names) or 'none'}") from None
