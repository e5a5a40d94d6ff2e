"""Optimizers and learning-rate schedules (paper Sections 3.1.2 and 3.1.3).

The paper pre-trains with AdaFactor at lr = 1/sqrt(max(step, 10^4)) and fine-tunes at a constant 1e-3.
``torch.optim.Adafactor`` scales each update by max(eps2, RMS(param)) x lr (T5's
``multiply_by_parameter_scale``), uses no momentum and a step-dependent second-moment decay, as T5 does.
Schedules are multipliers of ``lr`` given to LambdaLR:

    inverse_sqrt  lr * sqrt(w / max(step, w))      T5's rsqrt decay: constant for w steps, no ramp;
                                                    with lr=0.01, w=10^4 it is 1/sqrt(max(step, 10^4))
    constant      lr (after an optional linear warmup of w steps)
    cosine        linear warmup for w steps, then cosine decay to min_lr_ratio * lr at total_steps
    linear        linear warmup for w steps, then linear decay to min_lr_ratio * lr at total_steps
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from t5lit.registry import ConfigError, check_choice

OPTIMIZERS = ("adafactor", "adamw")
SCHEDULES = ("inverse_sqrt", "constant", "cosine", "linear")


def schedule_fn(name: str, warmup_steps: int, total_steps: int | None = None,
                min_lr_ratio: float = 0.0) -> Callable[[int], float]:
    """The multiplier of the base lr at optimizer step ``step`` (0-based, as LambdaLR counts)."""
    check_choice("schedule", name, SCHEDULES)
    if warmup_steps < 0:
        raise ConfigError(f"warmup_steps must be >= 0, got {warmup_steps}")
    w = warmup_steps
    if name == "inverse_sqrt":
        w = max(w, 1)
        return lambda step: math.sqrt(w / max(step + 1, w))

    def warm(step: int) -> float:
        return min(1.0, (step + 1) / w) if w > 0 else 1.0

    if name == "constant":
        return warm
    if not total_steps or total_steps <= w:
        raise ConfigError(f"schedule {name!r} needs total_steps > warmup_steps (got total_steps={total_steps}, "
                          f"warmup_steps={w}); set trainer.max_steps")

    def decay(step: int) -> float:
        if step < w:
            return warm(step)
        progress = min(1.0, (step - w) / (total_steps - w))
        shape = 0.5 * (1 + math.cos(math.pi * progress)) if name == "cosine" else 1.0 - progress
        return min_lr_ratio + (1 - min_lr_ratio) * shape

    return decay


def build_optimizer(params: Iterable[torch.nn.Parameter], name: str, lr: float, weight_decay: float = 0.0,
                    fused: bool | None = None) -> torch.optim.Optimizer:
    """Adafactor or AdamW. T5 uses no weight decay; it is 0 unless set.

    Kernels by device (benchmarks/RESULTS.md): AdamW is fused (one kernel for all tensors) on CUDA and CPU;
    Adafactor is foreach on CUDA, and a per-tensor loop on CPU, where foreach measures ~2x slower.
    """
    check_choice("optimizer", name, OPTIMIZERS)
    if lr <= 0:
        raise ConfigError(f"optimizer lr must be > 0, got {lr}")
    params = [p for p in params if p.requires_grad]
    device = params[0].device.type if params else "cpu"
    if name == "adafactor":
        return torch.optim.Adafactor(params, lr=lr, weight_decay=weight_decay, foreach=device == "cuda")
    if fused is None:
        fused = bool(params) and device in ("cuda", "cpu")
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=(0.9, 0.98), eps=1e-8, fused=fused)
