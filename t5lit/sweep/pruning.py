"""Optuna pruning from inside a Lightning run: report the monitored metric, stop when the pruner says so.

``run_experiment(cfg, run_dir, trial=trial)`` adds ``OptunaPruningCallback(trial, monitor="val/loss")`` to
every stage. Values are reported keyed on the trainer's global step; a run with several stages
(pre-train, then fine-tune) continues the step axis across them (``step_offset`` grows by each finished
stage's last step), so stage two's step 75 after a 150-step pre-training is reported as step 225.
"""

from __future__ import annotations

import math

import lightning as L
import optuna


class OptunaPruningCallback(L.Callback):
    """Reports ``monitor`` to ``trial`` after each validation and raises ``optuna.TrialPruned`` when the
    study's pruner decides to stop the trial (only on global rank 0's decision, which every rank shares
    through the trial's storage)."""

    def __init__(self, trial: optuna.Trial, monitor: str = "val/loss", step_offset: int = 0):
        super().__init__()
        self.trial, self.monitor, self.step_offset = trial, monitor, int(step_offset)
        self.reported: dict[int, float] = {}
        self._fit_started_at = 0

    def on_fit_start(self, trainer, pl_module) -> None:
        self._fit_started_at = self.step_offset

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.monitor])
        step = self._fit_started_at + int(trainer.global_step)
        if step in self.reported or not math.isfinite(value):
            return  # Optuna keeps the first report of a step; a NaN is the NaN guard's business
        if trainer.is_global_zero:
            self.trial.report(value, step)
        self.reported[step] = value
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step}: {self.monitor}={value:.4g}")

    def on_fit_end(self, trainer, pl_module) -> None:
        # The next stage's steps continue after this one's (the report's x-axis is one line per trial).
        self.step_offset = self._fit_started_at + int(trainer.global_step)
