"""The sweep report's figures (matplotlib, Agg): scores per variant, validation curves over seeds (mean and
band), the scorecard's measured-against-published scatter, and score against training compute. Each
function returns the figure; ``save`` writes it whole or not at all, and the report also puts it on
TensorBoard as an image (``pixels``)."""

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


def pixels(png: bytes) -> np.ndarray:
    """A PNG's (H, W, 3) float RGB pixels in [0, 1], for ``SummaryWriter.add_image(..., dataformats="HWC")``."""
    from matplotlib.image import imread

    return imread(io.BytesIO(png), format="png")[..., :3]


def _label(v: Variant) -> str:
    return f"{v.name} {STAR}" if v.baseline else v.name


def scores(study: str, variants: list[Variant], columns: list[str]):
    """One bar per variant and column: the mean over seeds, the standard deviation as error bar."""
    plt = _plt()
    n = max(1, len(columns))
    fig, axes = plt.subplots(1, n, figsize=(max(4.0, 0.5 * len(variants) + 2) * min(n, 3), 4.0), squeeze=False)
    for ax, col in zip(axes[0], columns or ["(no scores)"]):
        means = [v.mean(col) or 0.0 for v in variants]
        errs = [v.std(col) or 0.0 for v in variants]
        ax.bar(range(len(variants)), means, yerr=errs, color=["C1" if v.baseline else "C0" for v in variants])
        if variants:
            lo, hi = min(m - e for m, e in zip(means, errs)), max(m + e for m, e in zip(means, errs))
            pad = 0.15 * (hi - lo) or 1.0  # zoom in: the paper's differences are a few points out of 80
            ax.set_ylim(lo - pad, hi + pad)
        ax.set_xticks(range(len(variants)), [_label(v) for v in variants], rotation=60, ha="right", fontsize=7)
        ax.set_title(col)
    fig.suptitle(study)
    fig.tight_layout()
    return fig


def curve_band(curves: list[list]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Steps, mean, min and max over seeds' curves ([[step, value], ...] each) at the steps they all have."""
    steps = sorted(set.intersection(*[{p[0] for p in c} for c in curves])) if curves else []
    table = np.array([[dict((p[0], p[1]) for p in c)[s] for s in steps] for c in curves], dtype=np.float64)
    if not steps:
        return np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0)
    return np.asarray(steps), table.mean(axis=0), table.min(axis=0), table.max(axis=0)


def curves(study: str, variants: list[Variant]):
    """Validation curves per key (loss, each task's score): per variant the mean over its seeds, and the band
    from the lowest to the highest seed where it has several."""
    plt = _plt()
    keys = sorted({k for v in variants for r in v.values_of_runs() for k in r.curves})
    n = max(1, len(keys))
    fig, axes = plt.subplots(1, n, figsize=(4.5 * n, 3.5), squeeze=False)
    for ax, key in zip(axes[0], keys or ["(no validation curves)"]):
        for i, v in enumerate(variants):
            runs = [r.curves[key] for r in v.values_of_runs() if r.curves.get(key)]
            steps, mean, low, high = curve_band(runs)
            if len(steps):
                seeds = f" ({len(runs)} seeds)" if len(runs) > 1 else ""
                ax.plot(steps, mean, marker=".", color=f"C{i % 10}", label=_label(v) + seeds)
                if len(runs) > 1:
                    ax.fill_between(steps, low, high, color=f"C{i % 10}", alpha=0.2)
        ax.set_title(key)
        ax.set_xlabel("step")
        if ax.has_data():
            ax.legend(fontsize=6)
    fig.suptitle(f"{study}: validation (mean over seeds, band: min to max)")
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
    ax.set_xlabel(f"published ({card.table.name})")
    ax.set_ylabel("measured")
    ax.set_title(f"{study} against {card.table.name}")
    if ax.has_data():
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def compute(study: str, variants: list[Variant], column: str):
    """``column`` (mean over seeds, std as error bar) against training compute (FLOPs, log scale)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.0, 4.5))
    for i, v in enumerate(variants):
        flops, score = v.cost("train_flops"), v.mean(column)
        if flops and score is not None:
            ax.errorbar([flops], [score], yerr=[v.std(column) or 0.0], fmt="o", color=f"C{i % 10}", label=_label(v))
    if ax.has_data():
        ax.set_xscale("log")
        ax.legend(fontsize=6)
    ax.set_xlabel("training compute (FLOPs: FLOPs per token x training tokens)")
    ax.set_ylabel(column)
    ax.set_title(f"{study}: {column} against compute")
    fig.tight_layout()
    return fig
