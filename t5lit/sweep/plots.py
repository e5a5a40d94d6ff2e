"""The sweep report's figures (matplotlib, Agg): scores per variant, the training curves (pre-training loss
beside the fine-tuning validation curves, mean over seeds and their band), the scorecard's measured-against-
published scatter, and score against training compute. Each function returns the figure; ``save`` writes it
whole or not at all, and the report also puts it on TensorBoard as an image.

Every axis names its quantity and unit: scores are on the paper's 0-100 scale, losses in nats per target token
(cross-entropy), compute in FLOPs. Bars start at zero. Error bars: with several seeds, ±1 standard deviation
over the seeds; with one seed, the 95% bootstrap interval over the evaluation examples (``intervals``, from
the report's tester), and each figure says which.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from t5lit.io import atomic_write_bytes

if TYPE_CHECKING:
    from t5lit.sweep.scorecard import Scorecard
    from t5lit.sweep.variants import Variant

STAR = "★"
SCORE_UNIT = "score (0-100)"
LOSS_UNIT = "loss (nats per target token)"
PRETRAIN = "pretrain"  # the pre-training stage's TensorBoard folder (<run_dir>/tb/pretrain)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path) -> bytes:
    """The figure as a PNG, written whole or not at all; the figure is closed. Returns the PNG."""
    buf = io.BytesIO()
    fig.savefig(buf, dpi=100, format="png")
    _plt().close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return buf.getvalue()


def _label(v: Variant) -> str:
    return f"{v.name} {STAR}" if v.baseline else v.name


def error_bars(variants: list[Variant], column: str, intervals: dict | None = None) -> tuple[np.ndarray, str]:
    """(2, n) distances below and above each variant's mean for ``errorbar``/``bar``, and what they are:
    ±1 std over seeds where a variant has several, else its 95% bootstrap interval over the evaluation examples
    (``intervals[(variant, column)] = (low, high)``), else none."""
    below, above, kinds = [], [], set()
    for v in variants:
        m, s, ci = v.mean(column), v.std(column), (intervals or {}).get((v.name, column))
        if m is not None and s is not None:
            below.append(s)
            above.append(s)
            kinds.add(f"±1 std over {len(v.values.get(column) or [])} seeds")
        elif m is not None and ci is not None:
            below.append(max(0.0, m - ci[0]))
            above.append(max(0.0, ci[1] - m))
            kinds.add("95% bootstrap interval over the evaluation examples (one seed)")
        else:
            below.append(0.0)
            above.append(0.0)
    return np.asarray([below, above]), "; ".join(sorted(kinds)) or "no error bars: one seed, no per-example scores"


def scores(study: str, variants: list[Variant], columns: list[str], intervals: dict | None = None):
    """One bar per variant and column, from zero: the mean over seeds, with error bars (``error_bars``)."""
    plt = _plt()
    n = max(1, len(columns))
    fig, axes = plt.subplots(1, n, figsize=(max(4.0, 0.5 * len(variants) + 2) * min(n, 3), 4.6), squeeze=False)
    what = "no scores"
    for ax, col in zip(axes[0], columns or ["(no scores)"]):
        means = np.asarray([v.mean(col) or 0.0 for v in variants])
        errs, what = error_bars(variants, col, intervals)
        ax.bar(range(len(variants)), means, yerr=errs, capsize=3,
               color=["C1" if v.baseline else "C0" for v in variants])
        top = float((means + errs[1]).max()) if len(variants) else 1.0
        ax.set_ylim(0, max(1.0, min(100.0, 1.15 * top)) if top <= 100 else 1.1 * top)
        ax.set_xticks(range(len(variants)), [_label(v) for v in variants], rotation=60, ha="right", fontsize=7)
        ax.set_ylabel(f"{col} {SCORE_UNIT}")
        ax.set_title(col)
    fig.suptitle(f"{study}: validation scores (error bars: {what})", fontsize=9)
    fig.tight_layout()
    return fig


def curve_band(curves: list[list]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Steps, mean, min and max over seeds' curves ([[step, value], ...] each) at the steps they all have."""
    steps = sorted(set.intersection(*[{p[0] for p in c} for c in curves])) if curves else []
    table = np.array([[dict((p[0], p[1]) for p in c)[s] for s in steps] for c in curves], dtype=np.float64)
    if not steps:
        return np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0)
    return np.asarray(steps), table.mean(axis=0), table.min(axis=0), table.max(axis=0)


def stage_curve(run_dir: str | Path | None, stage: str = PRETRAIN, tag: str = "val/loss") -> list[list]:
    """A stage's scalar curve ``[[step, value], ...]`` from the run's TensorBoard logs (``<run_dir>/tb/<stage>``);
    [] when there are none. The pre-training losses live only there (results.json keeps fine-tuning's)."""
    folder = Path(run_dir) / "tb" / stage if run_dir else None
    if folder is None or not folder.is_dir():
        return []
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    if tag not in events.Tags().get("scalars", []):
        return []
    last = {e.step: e.value for e in events.Scalars(tag)}  # a resumed stage may log a step twice: keep the last
    return [[s, last[s]] for s in sorted(last)]


def _curve_label(key: str) -> tuple[str, str]:
    """(panel title, y label) of a curve key: ``pretrain:val/loss``, ``<stage>/loss``, or a task's score."""
    if key.startswith(f"{PRETRAIN}:"):
        tag = key.split(":", 1)[1]
        return f"pre-training {tag} (each objective's own loss)", LOSS_UNIT
    if key.endswith("/loss"):
        return f"fine-tuning {key.rsplit('/', 1)[0]}: validation loss", LOSS_UNIT
    return f"fine-tuning: validation {key}", f"{key} {SCORE_UNIT}"


def curves(study: str, variants: list[Variant]):
    """The training curves per key, pre-training's validation loss first (read from the runs' TensorBoard logs),
    then each fine-tuning curve (each task's headline score, the stage's loss): per variant the mean over its
    seeds, and the band from the lowest to the highest seed where it has several."""
    plt = _plt()
    runs_of = {v.name: v.values_of_runs() for v in variants}
    pre = {v.name: [c for r in runs_of[v.name] if (c := stage_curve(r.run_dir))] for v in variants}
    keys = ([f"{PRETRAIN}:val/loss"] if any(pre.values()) else []) + sorted(
        {k for v in variants for r in runs_of[v.name] for k in r.curves})
    n = max(1, len(keys))
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 3.8), squeeze=False)
    for ax, key in zip(axes[0], keys or ["(no curves)"]):
        for i, v in enumerate(variants):
            runs = pre[v.name] if key.startswith(f"{PRETRAIN}:") else [
                r.curves[key] for r in runs_of[v.name] if r.curves.get(key)]
            steps, mean, low, high = curve_band(runs)
            if len(steps):
                seeds = f" ({len(runs)} seeds)" if len(runs) > 1 else ""
                ax.plot(steps, mean, marker=".", color=f"C{i % 10}", label=_label(v) + seeds)
                if len(runs) > 1:
                    ax.fill_between(steps, low, high, color=f"C{i % 10}", alpha=0.2)
        title, ylabel = _curve_label(key) if keys else (key, "")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
        if ax.has_data():
            ax.legend(fontsize=6)
    fig.suptitle(f"{study}: training curves (mean over seeds; band: lowest to highest seed)", fontsize=9)
    fig.tight_layout()
    return fig


def scorecard(study: str, card: Scorecard):
    """Measured against published: one point per row and column, a colour per column, labelled by row."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 5.0))
    for i, col in enumerate(card.columns):
        pts = [(c["published"], c["measured"], c["variant"]) for c in card.cells
               if c["column"] == col and c["published"] is not None and c["measured"] is not None]
        if not pts:
            continue
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], color=f"C{i % 10}", label=col)
        for x, y, name in pts:
            ax.annotate(name, (x, y), fontsize=6, alpha=0.7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(f"published {SCORE_UNIT} ({card.table.name})")
    ax.set_ylabel(f"measured {SCORE_UNIT}")
    ax.set_title(f"{study} against {card.table.name}", fontsize=9)
    if ax.has_data():
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def compute(study: str, variants: list[Variant], column: str, intervals: dict | None = None):
    """``column`` (mean over seeds, with error bars as ``error_bars``) against training compute (FLOPs, log
    scale); the score axis starts at zero."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.0, 4.5))
    errs, what = error_bars(variants, column, intervals)
    for i, v in enumerate(variants):
        flops, score = v.cost("train_flops"), v.mean(column)
        if flops and score is not None:
            ax.errorbar([flops], [score], yerr=errs[:, i:i + 1], fmt="o", capsize=3, color=f"C{i % 10}",
                        label=_label(v))
    if ax.has_data():
        ax.set_xscale("log")
        ax.legend(fontsize=6)
        ax.set_ylim(bottom=0)
    ax.set_xlabel("training compute (FLOPs: FLOPs per token x training tokens)")
    ax.set_ylabel(f"{column} {SCORE_UNIT}")
    ax.set_title(f"{study}: {column} against compute\n(error bars: {what})", fontsize=9)
    fig.tight_layout()
    return fig
