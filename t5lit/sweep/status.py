"""``t5lit sweep status``: every job of a sweep with its state, attempts and last error, read from the study.

    t5lit sweep status sweeps/quickstart.yaml                  # or --study NAME [--storage URL] [--out DIR]

A job's state is that of its latest attempt:

- complete, pruned: finished (``value`` is the sweep's metric);
- failed: will not run again by itself (a NaN loss, an exception, or its worker lost more than
  ``max_retries`` times); fix the cause, then ``t5lit sweep run --retry-failed``;
- running: a worker (``host:pid``) has it, since when it shows;
- queued: waiting for a worker (a retry included);
- lost: its worker died and the retry is not queued yet (the next worker to look queues it);
- pending: in the sweep file, not yet in the study (a row added since the last run).

``attempts`` counts the attempts that started; ``last error`` is the latest attempt's failure, or how its
worker was lost, with the attempt's number.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from optuna.trial import FrozenTrial, TrialState

from t5lit.registry import ConfigError
from t5lit.sweep.spec import job_name
from t5lit.sweep.study import default_storage, is_final_failure, is_lost, jobs_of, open_from_url, redact

ERROR_WIDTH = 120


@dataclass(frozen=True)
class JobStatus:
    """One job (run directory) of a sweep: ``state`` as above, ``attempts`` started, the metric ``value``
    (finished jobs), the ``worker`` running it and since when, and its ``error`` (the latest failure)."""

    job: str
    state: str
    attempts: int = 0
    value: float | None = None
    worker: str = ""
    error: str = ""


def _error(t: FrozenTrial) -> str:
    attempt = t.user_attrs.get("attempt", "?")
    if is_lost(t):
        return f"attempt {attempt}: its worker {t.user_attrs.get('worker', '?')} was lost (died or stopped beating)"
    return f"attempt {attempt}: {t.user_attrs.get('failure', '?')}"


def job_status(job: str, attempts: list[FrozenTrial], max_retries: int, now: datetime | None = None) -> JobStatus:
    """The status of one job from its trials (oldest first)."""
    if not attempts:
        return JobStatus(job, "pending")
    t = attempts[-1]
    failures = [a for a in attempts if a.state == TrialState.FAIL]
    started = sum(a.state != TrialState.WAITING for a in attempts)
    value = t.value if t.state == TrialState.COMPLETE else None
    worker = ""
    if t.state == TrialState.COMPLETE:
        state = "complete"
    elif t.state == TrialState.PRUNED:
        state = "pruned"
    elif is_final_failure(attempts, max_retries):
        state = "failed"
    elif t.state == TrialState.RUNNING:
        state, worker = "running", t.user_attrs.get("worker", "?")
        if t.datetime_start is not None:
            start = t.datetime_start
            now = now or (datetime.now(timezone.utc) if start.tzinfo else datetime.now())
            worker += f" for {_minutes((now - start).total_seconds())}"
    elif t.state == TrialState.WAITING:
        state = "queued"
    else:
        state = "lost"
    return JobStatus(job, state, started, value, worker, _error(failures[-1]) if failures else "")


def _minutes(seconds: float) -> str:
    return f"{int(seconds)}s" if seconds < 60 else f"{int(seconds) // 60}m"


def collect(study, jobs: list[str] | None = None, max_retries: int = 3) -> list[JobStatus]:
    """Every job's status: ``jobs`` (the sweep's, in its order, pending ones included), then any other job the
    study holds."""
    by_job = jobs_of(study)
    order = list(jobs or []) + [j for j in by_job if j not in set(jobs or [])]
    return [job_status(job, by_job.get(job, []), max_retries) for job in order]


def format_status(study: str, where: str, statuses: list[JobStatus]) -> str:
    """The status table, plain text: one line per job and a line of counts."""
    head = ("job", "state", "attempts", "value", "worker", "last error")
    rows = [(s.job, s.state, str(s.attempts), "-" if s.value is None else f"{s.value:.4g}", s.worker or "-",
             _short(s.error) or "-") for s in statuses]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head) - 1)]
    lines = [f"sweep {study}: {len(statuses)} job(s) in {where}"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in [head, *rows]]
    counts: dict[str, int] = {}
    for s in statuses:
        counts[s.state] = counts.get(s.state, 0) + 1
    done = sum(counts.get(k, 0) for k in ("complete", "pruned", "failed"))
    order = ("complete", "pruned", "failed", "running", "queued", "lost", "pending")
    lines.append(f"{done}/{len(statuses)} done: " + ", ".join(f"{counts[k]} {k}" for k in order if k in counts))
    if counts.get("failed"):
        lines.append("failed rows run again with `t5lit sweep run SWEEP --retry-failed` (or when their row changes)")
    return "\n".join(line.rstrip() for line in lines)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= ERROR_WIDTH else text[:ERROR_WIDTH - 3] + "..."


def status_cli(ns) -> list[JobStatus]:
    """``t5lit sweep status [SWEEP] [--study NAME] [--storage URL] [--out DIR]``: print every job's status.
    The study must exist (a one-line error otherwise, and nothing is created)."""
    spec = None
    if ns.sweep:
        from t5lit.sweep.spec import load_sweep

        spec = load_sweep(ns.sweep, check_rows=False)
    name = ns.study or (spec.study if spec else None)
    if not name:
        raise ConfigError("sweep status needs a sweep file or --study NAME (with --storage for an RDB)")
    study = open_from_url(name, ns.storage, ns.out)
    desc = study.user_attrs.get("sweep") or {}
    if spec is not None and spec.study == name:
        jobs, retries = (spec.jobs() if spec.kind == "grid" else None), spec.max_retries
    else:
        rows, seeds = desc.get("rows") or [], desc.get("seeds") or [0]
        jobs, retries = [job_name(r, s) for r in rows for s in seeds] or None, desc.get("max_retries", 3)
    statuses = collect(study, jobs, retries)
    where = redact(ns.storage) if ns.storage else default_storage(Path(ns.out), name)
    print(format_status(name, where, statuses), flush=True)
    return statuses
