"""Optuna sweeps: a study from a sweep file, workers across processes / GPUs / machines, retry, report.

    t5lit sweep run sweeps/table2_architectures.yaml --devices 0,1,2,3      # one worker per GPU
    t5lit sweep run sweeps/quickstart.yaml --workers 2                      # CPU
    t5lit sweep run sweeps/t2.yaml --storage postgresql://u:p@db/optuna     # same command on every machine
    t5lit sweep run sweeps/quickstart.yaml --retry-failed                   # failed rows once more
    t5lit sweep status sweeps/quickstart.yaml                               # each row: state, attempts, error
    t5lit sweep report sweeps/table2_architectures.yaml                     # table.md/.csv, PNGs, TensorBoard

The parts: ``spec`` (parse and validate sweep files), ``study`` (storage, locks, which trial runs next,
lost-worker detection, the journal file that survives a torn record), ``supervisor`` (``run_sweep``: start
the worker processes, print progress), ``worker`` (one worker process: claim, run with a heartbeat, record
the outcome), ``follower`` (a DDP rank > 0 process of a trial, following rank 0), ``status`` (each job's
state), ``report`` (tables, plots). The Lightning callback reporting to Optuna is
``t5lit.callbacks.OptunaPruningCallback``.

``report`` (and with it torch) is imported on first use, so that worker processes of a runner of your own and
``t5lit sweep status`` start quickly.
"""

from __future__ import annotations

import sys

from t5lit.sweep.spec import Param, Row, SweepSpec, load_sweep
from t5lit.sweep.supervisor import run_sweep

__all__ = ["Param", "Report", "Row", "SweepSpec", "load_sweep", "report_cli", "run_cli", "run_sweep",
           "status_cli", "write_report"]
SHOWN_FAILURES = 5  # failed jobs named in run's last line


def __getattr__(name: str):
    if name in ("Report", "write_report"):
        from t5lit.sweep import report

        return getattr(report, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def outcome(result: dict) -> str | None:
    """One line saying what did not finish well in ``run_sweep``'s result (failed trials by name and reason,
    trials left unfinished), or None when every trial completed or was pruned."""
    study, problems = result.get("study", "?"), []
    failed = result.get("failed_jobs") or []
    if failed:
        named = "; ".join(f"{job} ({reason[:120]})" for job, reason in failed[:SHOWN_FAILURES])
        more = f"; and {len(failed) - SHOWN_FAILURES} more" if len(failed) > SHOWN_FAILURES else ""
        problems.append(f"{len(failed)} of {result['total']} trials failed: {named}{more}; fix the cause, then "
                        "run again with --retry-failed (`t5lit sweep status` shows every row)")
    left = result["total"] - result["done"]
    if left > 0:
        problems.append(f"{left} of {result['total']} trials did not finish (worker exit codes "
                        f"{result.get('exit_codes')}; logs in {result.get('logs')}); run the same command to continue")
    return f"sweep {study}: " + "; also ".join(problems) if problems else None


def run_cli(ns) -> dict:
    """``t5lit sweep run``: run (or continue) the sweep, then print its report table. Exits with code 1 when a
    trial failed or did not finish (one line on stderr names them), 128 + the signal when interrupted."""
    try:
        result = run_sweep(ns.sweep, storage=ns.storage, devices=ns.devices, devices_per_trial=ns.devices_per_trial,
                           workers=ns.workers, out_dir=ns.out, retry_failed=getattr(ns, "retry_failed", False))
    except KeyboardInterrupt as err:
        signum = getattr(err, "signum", 2)
        print(f"t5lit: sweep interrupted ({str(err) or 'SIGINT'}); its workers were stopped; run the same "
              "command to continue", file=sys.stderr, flush=True)
        raise SystemExit(128 + signum) from None
    from t5lit.sweep.report import write_report

    report = write_report(ns.sweep, storage=ns.storage, out_dir=ns.out)
    print(report.markdown)
    print(f"report: {report.files['markdown'].parent}", flush=True)
    problem = outcome(result)
    if problem:
        print(f"t5lit: {problem}", file=sys.stderr, flush=True)
        raise SystemExit(1)
    return result


def report_cli(ns):
    """``t5lit sweep report [SWEEP] [--study NAME] [--storage URL]``: write and print the report."""
    from t5lit.sweep.report import write_report

    report = write_report(ns.sweep, study=ns.study, storage=ns.storage, out_dir=ns.out,
                          std_from=getattr(ns, "std_from", None))
    print(report.markdown)
    print(f"report: {report.files['markdown'].parent}")
    return report


def status_cli(ns):
    """``t5lit sweep status [SWEEP] [--study NAME] [--storage URL]``: print each job's state."""
    from t5lit.sweep.status import status_cli as status

    return status(ns)
