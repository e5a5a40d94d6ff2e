"""Paper-style reports of a sweep: the table, a CSV, plots and the table on TensorBoard.

One row per variant (grid row, or search trial), one column per summary column the runs produced (GLUE,
CNNDM, SQuAD, SGLUE, EnDe, EnFr, EnRo, then other tasks) and their Average; mean ± std over seeds. As in
the paper (Section 3.1.5 / Table 1), the best score of each column is bold, and with replicates every
score within two standard deviations of the best as well (the baseline's standard deviation when it has
replicates, else the mean of the rows' standard deviations); the baseline is marked ★.

Files, under ``<out>/<study>/report/``: table.md, table.csv, scores.png (score per variant and column),
curves.png (validation curves per variant, from results' val_curves) and tb/ (the table as TensorBoard
text).
"""

from __future__ import annotations

import csv
import io
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from optuna.trial import FrozenTrial, TrialState

from t5lit.evaluator import PAPER_COLUMNS
from t5lit.io import atomic_write_bytes, atomic_write_text
from t5lit.registry import ConfigError
from t5lit.sweep.study import is_lost, jobs_of, open_from_url

AVERAGE = "Average"
STAR = "★"


@dataclass
class Variant:
    """One table row: per-column values over seeds, the trials' curves, and how its runs ended."""

    name: str
    baseline: bool = False
    params: str = ""
    values: dict[str, list[float]] = field(default_factory=dict)
    curves: dict[str, list] = field(default_factory=dict)
    status: list[str] = field(default_factory=list)

    def mean(self, col: str) -> float | None:
        v = self.values.get(col) or []
        return statistics.fmean(v) if v else None

    def std(self, col: str) -> float | None:
        v = self.values.get(col) or []
        return statistics.stdev(v) if len(v) > 1 else None


@dataclass
class Report:
    study: str
    columns: list[str]
    variants: list[Variant]
    bold: dict[str, set[str]]
    markdown: str
    files: dict[str, Path]


def _status(t: FrozenTrial) -> str:
    if t.state == TrialState.FAIL:
        return "lost" if is_lost(t) else f"failed ({t.user_attrs.get('failure', '?')})"
    return t.state.name.lower()


def collect(study, desc: dict) -> list[Variant]:
    """Variants from the study: each job's latest trial, grouped by row (grid) or one per trial (search)."""
    variants: dict[str, Variant] = {}
    if desc.get("kind") == "grid":
        for row in desc.get("rows", []):
            variants[row] = Variant(row, baseline=row == desc.get("baseline"))
    for job, attempts in jobs_of(study).items():
        t = attempts[-1]
        if desc.get("kind") == "grid":
            name = t.user_attrs.get("row", job.rsplit("-seed", 1)[0])
            if name not in variants:  # a row since removed from the sweep file: still reported, last
                variants[name] = Variant(name)
        else:
            name = job.rsplit("-seed", 1)[0]
            params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in t.params.items())
            variants[name] = Variant(name, params=params)
        v = variants[name]
        v.status.append(_status(t))
        if t.state == TrialState.COMPLETE:
            for col, value in (t.user_attrs.get("summary") or {}).items():
                if isinstance(value, (int, float)):
                    v.values.setdefault(col, []).append(float(value))
            for key, curve in (t.user_attrs.get("val_curves") or {}).items():
                v.curves.setdefault(key, curve)  # the first completed seed's curve
    out = list(variants.values())
    if desc.get("kind") != "grid":  # searches: best first by the study's metric
        sign = -1 if desc.get("direction", "maximize") == "maximize" else 1
        values = {t.user_attrs.get("job", "").rsplit("-seed", 1)[0]: t.value for t in study.get_trials(deepcopy=False)
                  if t.state == TrialState.COMPLETE}
        out.sort(key=lambda v: (values.get(v.name) is None, sign * (values.get(v.name) or 0.0)))
    return out


def choose_columns(variants: list[Variant], wanted: list[str] | None = None) -> list[str]:
    """``wanted``, or every column seen, the paper's in the paper's order first; Average when > 1."""
    seen = {c for v in variants for c in v.values}
    cols = list(wanted) if wanted else [c for c in PAPER_COLUMNS if c in seen] + sorted(seen - set(PAPER_COLUMNS))
    for v in variants:  # the Average of each run over the table's columns (complete runs only)
        per_seed = [v.values.get(c, []) for c in cols]
        n = min((len(x) for x in per_seed), default=0)
        if len(cols) > 1 and n:
            v.values[AVERAGE] = [statistics.fmean(x[i] for x in per_seed) for i in range(n)]
    return cols + ([AVERAGE] if len(cols) > 1 else [])


def bold_cells(variants: list[Variant], columns: list[str], higher_is_better: bool = True) -> dict[str, set[str]]:
    """Per column, the variants in bold: the best, and with replicates all within 2 standard deviations.

    >>> a, b = Variant("a", values={"X": [80.0, 82.0]}), Variant("b", values={"X": [79.0, 80.0]})
    >>> bold_cells([a, b], ["X"])["X"] == {"a", "b"}   # 79.5 >= 81 - 2 * 1.41
    True
    """
    base = next((v for v in variants if v.baseline), None)
    out: dict[str, set[str]] = {}
    for col in columns:
        means = {v.name: v.mean(col) for v in variants if v.mean(col) is not None}
        if not means:
            out[col] = set()
            continue
        best = max(means.values()) if higher_is_better else min(means.values())
        stds = [s for v in variants if (s := v.std(col)) is not None]
        ref = base.std(col) if base is not None and base.std(col) is not None else (
            statistics.fmean(stds) if stds else 0.0)
        margin = 2 * ref + 1e-9
        out[col] = {n for n, m in means.items() if (m >= best - margin if higher_is_better else m <= best + margin)}
    return out


def _cell(v: Variant, col: str, bold: bool) -> str:
    m, s = v.mean(col), v.std(col)
    if m is None:
        return "–"
    text = f"{m:.2f}" + (f" ± {s:.2f}" if s is not None else "")
    return f"**{text}**" if bold else text


def markdown_table(variants: list[Variant], columns: list[str], bold: dict[str, set[str]]) -> str:
    show_params = any(v.params for v in variants)
    seeds = max((len(v.status) for v in variants), default=0)
    show_status = any(len(v.status) < seeds or any(s != "complete" for s in v.status) for v in variants)
    head = ["Variant", *(["Params"] if show_params else []), *columns, *(["Runs"] if show_status else [])]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join([":---"] + ["---:"] * (len(head) - 1)) + "|"]
    for v in variants:
        name = f"{v.name} {STAR}" if v.baseline else v.name
        cells = [name, *([v.params] if show_params else []), *(_cell(v, c, v.name in bold[c]) for c in columns)]
        if show_status:
            cells.append(", ".join(v.status) or "not run")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _write_csv(path: Path, variants: list[Variant], columns: list[str]) -> None:
    f = io.StringIO(newline="")  # built in memory, written atomically
    w = csv.writer(f)
    w.writerow(["variant", "baseline", "params", "runs", *[x for c in columns for x in (c, f"{c}_std")]])
    for v in variants:
        row = [v.name, int(v.baseline), v.params, ";".join(v.status)]
        for c in columns:
            m, s = v.mean(c), v.std(c)
            row += ["" if m is None else f"{m:.4f}", "" if s is None else f"{s:.4f}"]
        w.writerow(row)
    atomic_write_text(path, f.getvalue())


def _save_figure(fig, path: Path) -> None:
    """A PNG written whole or not at all."""
    buf = io.BytesIO()
    fig.savefig(buf, dpi=100, format="png")
    atomic_write_bytes(path, buf.getvalue())


def _plot_scores(path: Path, study: str, variants: list[Variant], columns: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(1, len(columns))
    fig, axes = plt.subplots(1, n, figsize=(max(4.0, 0.5 * len(variants) + 2) * min(n, 3), 4.0), squeeze=False)
    names = [f"{v.name} {STAR}" if v.baseline else v.name for v in variants]
    for ax, col in zip(axes[0], columns or ["(no scores)"]):
        means = [v.mean(col) or 0.0 for v in variants]
        errs = [v.std(col) or 0.0 for v in variants]
        ax.bar(range(len(variants)), means, yerr=errs, color=["C1" if v.baseline else "C0" for v in variants])
        lo, hi = min(m - e for m, e in zip(means, errs)), max(m + e for m, e in zip(means, errs))
        pad = 0.15 * (hi - lo) or 1.0  # zoom in: the paper's differences are a few points out of 80
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_xticks(range(len(variants)), names, rotation=60, ha="right", fontsize=7)
        ax.set_title(col)
    fig.suptitle(study)
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)


def _plot_curves(path: Path, study: str, variants: list[Variant]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({k for v in variants for k in v.curves})
    n = max(1, len(keys))
    fig, axes = plt.subplots(1, n, figsize=(4.5 * n, 3.5), squeeze=False)
    for ax, key in zip(axes[0], keys or ["(no validation curves)"]):
        for v in variants:
            pts = v.curves.get(key) or []
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".",
                        label=f"{v.name} {STAR}" if v.baseline else v.name)
        ax.set_title(key)
        ax.set_xlabel("step")
        if ax.has_data():
            ax.legend(fontsize=6)
    fig.suptitle(f"{study}: validation")
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)


def write_report(sweep: str | Path | None = None, *, study: str | None = None, storage: str | None = None,
                 out_dir: str | Path = "runs/sweeps") -> Report:
    """Build the report of a sweep (its file, or a study name and storage) into ``<out>/<study>/report``."""
    if sweep is not None:
        from t5lit.sweep.spec import load_sweep

        study = study or load_sweep(sweep, check_rows=False).study
    if not study:
        raise ConfigError("sweep report needs a sweep file or --study NAME (with --storage for an RDB)")
    st = open_from_url(study, storage, out_dir)
    desc = st.user_attrs.get("sweep") or {"kind": "search"}
    variants = collect(st, desc)
    columns = choose_columns(variants, desc.get("columns") or None)
    bold = bold_cells(variants, columns)
    md = markdown_table(variants, columns, bold)
    done = sum(s == "complete" for v in variants for s in v.status)
    md = f"### {study}\n\n{md}\n\n{done}/{desc.get('total', '?')} runs complete; {STAR} baseline; bold: best" \
         f" (and within 2 std of it when seeds repeat).\n"
    folder = Path(out_dir) / study / "report"
    folder.mkdir(parents=True, exist_ok=True)
    files = {"markdown": folder / "table.md", "csv": folder / "table.csv", "scores": folder / "scores.png",
             "curves": folder / "curves.png", "tensorboard": folder / "tb"}
    atomic_write_text(files["markdown"], md)
    _write_csv(files["csv"], variants, columns)
    _plot_scores(files["scores"], study, variants, columns)
    _plot_curves(files["curves"], study, variants)
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(files["tensorboard"])) as w:
        w.add_text(f"sweep/{study}", md)
    return Report(study, columns, variants, bold, md, files)
