"""A DDP rank > 0 process of a sweep trial: it follows rank 0's trial instead of claiming one.

A worker running a trial on several devices is rank 0. Before calling the runner it announces the trial in
``T5LIT_SWEEP_RUN`` (``announce``); Lightning's DDP launcher then starts each rank > 0 by re-running the
worker's command line (``python -m t5lit.sweep.worker ...``) with that environment plus ``LOCAL_RANK`` etc.
``t5lit.sweep.worker.main`` sees ``followed_job()`` and hands over to ``follow``, which runs the same trial
alongside rank 0; Lightning joins the processes inside each fit. Rank 0 alone talks to the study: a follower
never claims, beats or records a trial.

A follower dies with its rank 0: ``t5lit.sweep.worker.main`` arms the parent-death signal (``die_with_parent``)
before it hands over, with rank 0 named as the parent in ``T5LIT_SWEEP_PARENT``; a supervisor that stops its
workers kills each one's process group, followers included.

This module owns that hand-over (the environment's name and content); it imports no other sweep module.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import optuna

FOLLOWER_ENV = "T5LIT_SWEEP_RUN"  # rank > 0 processes of a DDP trial follow rank 0's run through this
# What a DDP trial leaves in rank 0's environment; the worker restores these after each trial.
DDP_ENV = (FOLLOWER_ENV, "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def announce(cfg: dict, run_dir: Path, runner: str, pruning: bool) -> None:
    """Rank 0, before running a trial: describe it for the rank > 0 processes its launcher will start."""
    os.environ[FOLLOWER_ENV] = json.dumps({"cfg": cfg, "run_dir": str(run_dir), "runner": runner,
                                           "pruning": pruning})


def followed_job() -> dict | None:
    """The announced trial when this process is a DDP rank > 0 (``LOCAL_RANK`` or ``RANK`` above 0), else
    None: ``{"cfg", "run_dir", "runner" ("module:function"), "pruning"}``."""
    env = os.environ.get(FOLLOWER_ENV)
    if env and int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0"))) > 0:
        return json.loads(env)
    return None


def follow(job: dict, runner: Callable) -> None:
    """Run rank 0's trial ``job`` in this rank > 0 process with ``runner`` (the loaded ``job["runner"]``)."""
    trial = None
    if job.get("pruning"):  # imported only then: a runner of one's own may not use Lightning at all
        from t5lit.callbacks import RANK_FOLLOWER_TRIAL as trial
    try:
        runner(job["cfg"], Path(job["run_dir"]), trial=trial)
    except optuna.TrialPruned:  # rank 0 decided and records it; this rank stops with it
        pass
