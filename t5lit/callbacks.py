"""Callbacks: throughput and model FLOPs utilization (from analytic FLOP counts), the best checkpoint per task,
the NaN guard and Optuna pruning.

FLOPs per example come from the architecture's ``ArchSpec.train_flops`` (t5lit.model.architectures): the
matrix multiplications of one training step (forward x 3: the backward pass costs twice the forward), the
convention of the PaLM paper's MFU (Chowdhery et al. 2022, appendix B; ``t5lit.model.stack.stack_flops``).
"""

from __future__ import annotations

import math
import time

import lightning as L
import torch

# Dense peak FLOP/s by device name fragment, from the vendors' data sheets (bf16/fp16 tensor cores,
# no sparsity; fp32 entries for fp32 training). Matched against torch.cuda.get_device_name().
PEAK_FLOPS_BF16 = {
    "H200": 989e12, "H100 SXM": 989e12, "H100 NVL": 835e12, "H100 PCIe": 756e12, "H100": 989e12,
    "A100": 312e12, "A10G": 125e12, "A10": 125e12, "L40S": 362e12, "L4": 121e12, "V100": 125e12,
    "RTX 4090": 165e12, "RTX 3090": 71e12,
}
PEAK_FLOPS_TF32 = {"H200": 494.5e12, "H100": 494.5e12, "A100": 156e12}


def peak_flops(device: torch.device, precision: str, override: float | None = None) -> float | None:
    """The device's dense peak FLOP/s for ``precision`` (Lightning's string), or ``override``."""
    if override:
        return float(override)
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    table = PEAK_FLOPS_BF16 if ("16" in str(precision)) else PEAK_FLOPS_TF32
    for fragment, value in table.items():
        if fragment in name:
            return value
    return None


def cpu_peak_flops(precision: str, threads: int | None = None) -> float | None:
    """The nominal dense peak FLOP/s of ``threads`` CPU cores (default: torch's intra-op threads): cores x clock
    x FLOPs per cycle of the widest vector unit, two FMA units a core (AVX-512: 64 fp32 FLOPs a cycle, AVX2:
    32; bf16 twice that with AVX512_BF16, 1024 with AMX). A data-sheet-style upper bound read from
    /proc/cpuinfo (Linux x86; None elsewhere), so a CPU's MFU is a lower bound."""
    try:
        info = open("/proc/cpuinfo", encoding="utf-8").read()
    except OSError:
        return None
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    mhz = [float(line.split(":", 1)[1]) for line in info.splitlines() if line.startswith("cpu MHz")]
    if not mhz or not flags & {"avx2", "avx512f"}:
        return None
    per_cycle = 64.0 if "avx512f" in flags else 32.0  # fp32: lanes (16 | 8) x 2 (FMA) x 2 units
    if "16" in str(precision):
        per_cycle = 1024.0 if "amx_bf16" in flags else (2 * per_cycle if "avx512_bf16" in flags else per_cycle)
    return (threads or torch.get_num_threads()) * max(mhz) * 1e6 * per_cycle


class ThroughputMonitor(L.Callback):
    """Logs ``perf/tokens_per_sec``, ``perf/examples_per_sec``, ``perf/flops_per_sec`` and ``perf/mfu`` every
    ``log_every`` training steps and at the end of the stage (so that a stage shorter than ``log_every`` logs
    them too), straight to the trainer's loggers at the global step: Lightning's own logging cadence
    (``log_every_n_steps``) would drop the values of steps that do not fall on it.

    Token counts come from the batch shapes (no host synchronisation). A step's time runs from the end of the
    previous step to its own end (data loading included); the step after a validation is not timed (its
    interval holds the validation), nor are the first ``warmup`` steps (compilation). With CUDA's asynchronous
    queue the average over a window is right while single steps are not. MFU divides the model FLOPs
    (``ArchSpec.train_flops``) by the device's peak: a GPU's data-sheet figure, on CPU the nominal vector peak
    of the threads in use (``cpu_peak_flops``), or ``peak_flops`` when given.

    ``progress``: a JSON file that gets ``{"stage", "step", "max_steps", "time"}`` at the start, every
    ``progress_every`` seconds and at the end of the stage (``t5lit sweep run`` shows it in its progress line)."""

    def __init__(self, log_every: int = 50, warmup: int = 2, peak_flops: float | None = None,
                 progress: str | None = None, stage: str = "", progress_every: float = 5.0):
        self.log_every, self.warmup, self.peak_override = max(1, int(log_every)), warmup, peak_flops
        self.progress, self.stage, self.progress_every = progress, stage, progress_every
        self._last: float | None = None  # end of the previous step; None: the next step is not timed
        self._time = 0.0
        self._tokens = self._rows = self._timed = 0
        self._flops = 0.0
        self._steps = 0
        self._peak: float | None = None
        self._written = 0.0

    def on_train_start(self, trainer, pl_module):
        if pl_module.device.type == "cpu":
            self._peak = self.peak_override or cpu_peak_flops(str(trainer.precision))
        else:
            self._peak = peak_flops(pl_module.device, str(trainer.precision), self.peak_override)
        self._write_progress(trainer, force=True)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        now = time.perf_counter()
        self._steps += 1
        if self._last is not None and self._steps > self.warmup:
            rows, in_len, tgt_len = pl_module.batch_geometry(batch)
            cfg = pl_module.config
            self._rows += rows
            self._tokens += rows * (in_len + tgt_len)
            self._flops += rows * cfg.spec.train_flops(cfg, in_len, tgt_len)  # (cfg, encoder len, decoder len)
            self._time += now - self._last
            self._timed += 1
        self._last = now
        if self._timed >= self.log_every:
            self._log(trainer, pl_module)
        self._write_progress(trainer)

    def on_validation_start(self, trainer, pl_module):
        self._last = None

    def on_validation_end(self, trainer, pl_module):
        self._last = None

    def on_train_end(self, trainer, pl_module):
        if self._timed:
            self._log(trainer, pl_module)
        self._write_progress(trainer, force=True)

    def _log(self, trainer, pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        dt = max(self._time, 1e-9)
        world = trainer.world_size
        metrics = {"perf/tokens_per_sec": self._tokens * world / dt, "perf/examples_per_sec": self._rows * world / dt,
                   "perf/flops_per_sec": self._flops * world / dt}
        if self._peak:
            metrics["perf/mfu"] = self._flops / dt / self._peak
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)
        self._time, self._tokens, self._rows, self._flops, self._timed = 0.0, 0, 0, 0.0, 0

    def _write_progress(self, trainer, force: bool = False) -> None:
        if not self.progress or not trainer.is_global_zero:
            return
        now = time.time()
        if force or now - self._written >= self.progress_every:
            from t5lit.io import atomic_write_json

            try:
                atomic_write_json(self.progress, {"stage": self.stage, "step": int(trainer.global_step),
                                                  "max_steps": int(trainer.max_steps), "time": now})
            except OSError:  # progress is a courtesy: never fail a run over it
                pass
            self._written = now


class NonFiniteLossGuard(L.Callback):
    """Fails a run whose training loss or gradient norm becomes NaN or infinite, or whose validation loss does.

    Every step is watched without a host synchronisation per step: the first non-finite step is accumulated
    on the device (``_mark``), and read (one sync) every ``every`` steps, before every validation, before
    every checkpoint (``StageCheckpoint`` calls ``check``) and at the end of the stage, where the weights
    themselves are checked too: a stage never hands non-finite weights to the next one. Raises
    ``NonFiniteLoss`` naming the step, so a sweep marks the trial failed with the reason. Under DDP the ranks
    decide together (any rank's verdict stops all of them): one rank stopping alone would leave the others
    waiting in the next collective. Gradients are checked after DDP's all-reduce, so every rank agrees; with
    fp16 mixed precision the gradient scaler skips non-finite steps by design and only the loss is watched.
    """

    WHAT = ("training loss", "gradient norm", "weights")

    def __init__(self, every: int = 10):
        self.every = max(1, int(every))
        self._first: torch.Tensor | None = None  # first bad step (1-based), -1 while all is finite
        self._code: torch.Tensor | None = None  # index into WHAT
        self._value: torch.Tensor | None = None  # the loss at that step

    def _mark(self, bad: torch.Tensor, step: int, code: int, value: torch.Tensor | None = None,
              overrides: int | None = None) -> None:
        """Record ``step`` as the first bad one when ``bad`` (a 0-d device bool) and none was recorded yet,
        or when the recorded one is the same step with code ``overrides``. Device ops only: no sync."""
        if self._first is None or self._first.device != bad.device:
            self._first = torch.full((), -1, dtype=torch.long, device=bad.device)
            self._code = torch.zeros((), dtype=torch.long, device=bad.device)
            self._value = torch.zeros((), dtype=torch.float32, device=bad.device)
        new = bad & (self._first < 0)
        if overrides is not None:
            new = new | (bad & (self._first == step) & (self._code == overrides))
        self._first = torch.where(new, torch.full_like(self._first, step), self._first)
        self._code = torch.where(new, torch.full_like(self._code, code), self._code)
        if value is not None:
            self._value = torch.where(new, value.detach().float().reshape(()), self._value)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if "16-mixed" in str(getattr(trainer, "precision", "")) and "bf16" not in str(trainer.precision):
            return
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if grads:
            norms = torch.stack(torch._foreach_norm(grads))
            self._mark(~torch.isfinite(norms).all(), trainer.global_step + 1, 1)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None:  # the loss takes the blame over the gradient of its own step
            self._mark(~torch.isfinite(loss.detach()), trainer.global_step, 0, loss, overrides=1)
        if trainer.global_step % self.every == 0:
            self.check(trainer)

    def on_validation_start(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.check(trainer)

    def on_validation_end(self, trainer, pl_module):
        value = trainer.callback_metrics.get("val/loss")
        if trainer.sanity_checking or value is None or bool(torch.isfinite(torch.as_tensor(value))):
            return  # val/loss is synchronised across ranks: every rank decides alike
        raise NonFiniteLoss(f"validation loss became {float(value)} at step {trainer.global_step}")

    def on_train_end(self, trainer, pl_module):
        params = [p.detach() for p in pl_module.parameters()]
        if params:
            norms = torch.stack(torch._foreach_norm(params))
            self._mark(~torch.isfinite(norms).all(), trainer.global_step, 2)
        self.check(trainer)

    def check(self, trainer) -> None:
        """Raise ``NonFiniteLoss`` if any rank saw a non-finite loss, gradient or weight so far (one sync)."""
        first = int(self._first) if self._first is not None else -1
        if trainer.strategy.reduce_boolean_decision(first >= 0, all=False):  # any rank's; itself without DDP
            step = trainer.global_step
            if first < 0:
                raise NonFiniteLoss(f"training loss became non-finite on another rank at step {step}")
            what = self.WHAT[int(self._code)]
            value = f"{float(self._value)}" if int(self._code) == 0 else "non-finite"
            later = f" (first non-finite at step {first})" if first != step else ""
            self._first = None  # reported: a guard reused after the failure starts clean
            raise NonFiniteLoss(f"{what} became {value} at step {step}{later}")


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite."""


class StageCheckpoint(L.Callback):
    """``last.ckpt`` of a stage, written after every validation, once that validation's scores are recorded.

    The order is what makes resuming exact at any kill point: a checkpoint exists only for a step whose
    validation (scores, best checkpoints, scores.json) is complete, so a run killed mid-step, mid-validation
    or between a validation and its checkpoint resumes from the previous checkpoint and takes exactly the steps
    (and validations) the uninterrupted run took: batches and dropout are functions of the seed and the step.
    The divergence guard is consulted first (no checkpoint of non-finite weights). Saving is collective under
    DDP; global rank 0 writes the file atomically (``t5lit.checkpoint.save_trainer_checkpoint``). Place it after
    the callbacks that record a validation (BestPerTask).
    """

    def __init__(self, dirpath: str, guard: NonFiniteLossGuard | None = None):
        self.dirpath, self.guard = dirpath, guard

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking or trainer.state.fn != "fit":  # not a standalone trainer.validate()
            return
        import os

        from t5lit.checkpoint import save_trainer_checkpoint

        if self.guard is not None:
            self.guard.check(trainer)
        save_trainer_checkpoint(trainer, os.path.join(self.dirpath, "last.ckpt"))


class BestPerTask(L.Callback):
    """Keeps every validation's task scores, and each task's best score and (optionally) checkpoint.

    It reads the structured result the Evaluator gave the LightningModule (``pl_module.last_eval``, an
    ``EvalResult``); a task's score is its headline score (``Task.headline``: the mean of the metrics the
    paper reports for it, e.g. MRPC's F1 and accuracy). The best validation checkpoint per task is what the
    paper reports (Section 3.1.3). ``history`` maps task -> [(step, {metric: value})], and "loss" ->
    [(step, {"loss": val/loss})]; the state is written to ``<dirpath>/scores.json`` atomically.
    """

    def __init__(self, dirpath: str, keep_checkpoints: bool = True):
        self.dirpath = dirpath
        self.keep = keep_checkpoints
        self.history: dict[str, list] = {}
        self.best: dict[str, dict] = {}

    def state_dict(self):
        return {"history": self.history, "best": self.best}

    def load_state_dict(self, state):
        self.history, self.best = state.get("history", {}), state.get("best", {})

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        import os

        from t5lit.io import atomic_write_json

        result = getattr(pl_module, "last_eval", None)
        pl_module.last_eval = None  # consumed: a later validation without decoding must not reuse it
        step = trainer.global_step
        for task, r in (result.tasks.items() if result is not None else ()):
            self.history.setdefault(task, []).append([step, dict(r.metrics)])
            if task not in self.best or r.score > self.best[task]["score"]:
                self.best[task] = {"score": r.score, "step": step, "metrics": dict(r.metrics),
                                   "num_examples": r.num_examples, "examples": r.examples,
                                   "intervals": r.intervals}
                if self.keep:  # every rank decides alike (the predictions are gathered); saving is collective
                    from t5lit.checkpoint import save_trainer_checkpoint

                    save_trainer_checkpoint(trainer, os.path.join(self.dirpath, f"best-{task}.ckpt"))
        if "val/loss" in trainer.callback_metrics:
            self.history.setdefault("loss", []).append([step, {"loss": float(trainer.callback_metrics["val/loss"])}])
        if trainer.is_global_zero:
            atomic_write_json(os.path.join(self.dirpath, "scores.json"), self.state_dict())


# ------------------------------------------------------------------------------------------ Optuna pruning
# ``run_experiment(cfg, run_dir, trial=trial)`` adds ``OptunaPruningCallback(trial, monitor="val/loss")`` to every
# stage. Values are reported keyed on the trainer's global step; a run with several stages (pre-train, then
# fine-tune) continues the step axis across them (``step_offset`` grows by each finished stage's last step), so
# stage two's step 75 after a 150-step pre-training is reported as step 225.

RANK_FOLLOWER_TRIAL = object()  # the trial of a DDP rank > 0: it receives rank 0's pruning decisions


class OptunaPruningCallback(L.Callback):
    """Reports ``monitor`` to ``trial`` after each validation and raises ``optuna.TrialPruned`` when the
    study's pruner decides to stop the trial. Under DDP, global rank 0 reports and decides, and broadcasts
    the decision, so every rank stops together; the other ranks hold ``RANK_FOLLOWER_TRIAL`` (a sweep
    worker's DDP followers do) and only receive it."""

    def __init__(self, trial, monitor: str = "val/loss", step_offset: int = 0):
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
        self.reported[step] = value
        prune = False
        if trainer.is_global_zero:
            self.trial.report(value, step)
            prune = bool(self.trial.should_prune())
        # every rank reaches this point alike (val/loss is synchronised); without DDP, a no-op
        if trainer.strategy.broadcast(prune, src=0):
            import optuna

            raise optuna.TrialPruned(f"pruned at step {step}: {self.monitor}={value:.4g}")

    def on_fit_end(self, trainer, pl_module) -> None:
        # The next stage's steps continue after this one's (the report's x-axis is one line per trial).
        self.step_offset = self._fit_started_at + int(trainer.global_step)


# ------------------------------------------------------------------------------------------ gradual unfreezing
class GradualUnfreezing(L.Callback):
    """Gradual unfreezing (paper Section 3.5.1, Table 10): "we gradually unfreeze layers in the encoder and
    decoder in parallel, starting from the top in both cases ... we subdivide the fine-tuning process into 12
    episodes of 2^18/12 steps each and train from layers 12 - n to 12 in the nth episode".

    Block k from the top of every stack (``t5lit.model.architectures.blocks_from_top``) trains from step
    ``starts[k]`` on: k * ``every``, or with ``every`` None floor(k * steps / blocks), so the fine-tuning steps
    are split into as many episodes as a stack has blocks and the bottom block trains in the last one. E.g.
    t5-base (12 blocks), 2^18 steps: blocks start at 0, 21845, 43690, 65536, ..., 240298. The embedding (which
    is also the output layer), an untied output layer and the final norms train throughout.

    Freezing drops the frozen blocks' gradients before every optimizer step (and before gradient clipping),
    so the optimizer neither moves them nor keeps any state for them; ``requires_grad`` never changes, which
    DDP needs, and the gradient still flows through the frozen blocks to the input embedding. The frozen set
    is a pure function of the global step: a resumed run freezes exactly what the uninterrupted one did.
    """

    def __init__(self, steps: int, every: int | None = None):
        self.steps, self.every = int(steps), every
        self._groups: list[list[torch.nn.Parameter]] = []
        self._starts: list[int] = []

    @staticmethod
    def schedule(steps: int, blocks: int, every: int | None = None) -> list[int]:
        """The step from which block k (0: the top) trains, for k in range(blocks)."""
        if every is None:
            return [k * steps // blocks for k in range(blocks)]
        return [k * every for k in range(blocks)]

    def trainable_blocks(self, step: int) -> int:
        """How many blocks (from the top of each stack) train at global step ``step``."""
        return sum(start <= step for start in self._starts)

    def on_fit_start(self, trainer, pl_module):
        from lightning.pytorch.utilities import rank_zero_info

        from t5lit.model.architectures import blocks_from_top

        # After the strategy set the model up: a sharded model's parameters are the ones the optimizer holds.
        self._groups = blocks_from_top(pl_module.model)
        self._starts = self.schedule(self.steps, len(self._groups), self.every)
        rank_zero_info(f"gradual unfreezing: {len(self._groups)} blocks per stack from the top, starting at steps "
                       f"{self._starts}")

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        step = trainer.global_step  # optimizer steps taken so far: this step's index
        for start, params in zip(self._starts, self._groups):
            if start > step:
                for p in params:
                    p.grad = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step - 1  # the step just taken
        pl_module.log("train/unfrozen_blocks", float(self.trainable_blocks(step)), on_step=True, on_epoch=False)
