"""Optuna sweeps: a study from a sweep file, workers across processes / GPUs / machines, retry, report.

    t5lit sweep run sweeps/table2_architectures.yaml --devices 0,1,2,3      # one worker per GPU
    t5lit sweep run sweeps/quickstart.yaml --workers 2                      # CPU
    t5lit sweep run sweeps/t2.yaml --storage postgresql://u:p@db/optuna     # same command on every machine
    t5lit sweep report sweeps/table2_architectures.yaml                     # table.md/.csv, PNGs, TensorBoard

The parts: ``spec`` (parse and validate sweep files), ``study`` (storage, locks, which trial runs next,
lost-worker detection), ``supervisor`` (``run_sweep``: start the worker processes, print progress),
``worker`` (one worker process: claim, run with a heartbeat, record the outcome), ``follower`` (a DDP rank > 0
process of a trial, following rank 0), ``report`` (tables, plots). The Lightning callback reporting to
Optuna is ``t5lit.callbacks.OptunaPruningCallback``.
"""

from __future__ import annotations

from t5lit.sweep.report import Report, write_report
from t5lit.sweep.spec import Param, Row, SweepSpec, load_sweep
from t5lit.sweep.supervisor import run_sweep

__all__ = ["Param", "Report", "Row", "SweepSpec", "load_sweep", "report_cli", "run_cli", "run_sweep",
           "write_report"]


def run_cli(ns) -> dict:
    """``t5lit sweep run``: run (or continue) the sweep, then print its report table."""
    result = run_sweep(ns.sweep, storage=ns.storage, devices=ns.devices, devices_per_trial=ns.devices_per_trial,
                       workers=ns.workers, out_dir=ns.out, retry_failed=getattr(ns, "retry_failed", False))
    report = write_report(ns.sweep, storage=ns.storage, out_dir=ns.out)
    print(report.markdown)
    print(f"report: {report.files['markdown'].parent}")
    return result


def report_cli(ns) -> Report:
    """``t5lit sweep report [SWEEP] [--study NAME] [--storage URL]``: write and print the report."""
    report = write_report(ns.sweep, study=ns.study, storage=ns.storage, out_dir=ns.out)
    print(report.markdown)
    print(f"report: {report.files['markdown'].parent}")
    return report
