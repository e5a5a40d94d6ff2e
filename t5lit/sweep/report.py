"""Paper-style reports of a sweep: the table, a CSV, plots, the scorecard against the paper, TensorBoard.

One row per variant (grid row, or search trial), one column per summary column the runs produced (GLUE,
CNNDM, SQuAD, SGLUE, EnDe, EnFr, EnRo, then other tasks) and their Average; mean ± std over seeds; beside
them what the row cost (parameters, training FLOPs per token, training tokens, wall time; the paper's P and M
of Table 2). As in the paper (Section 3.1.5 / Table 1), the best score of each column is bold, and with
replicates every score within two standard deviations of the best as well (the baseline's standard deviation
when it has replicates, else the mean of the rows' standard deviations); the baseline is marked ★.

Below the table, each row against ★ with a test (t5lit/sweep/scorecard.py): Welch's t-test and a bootstrap
interval with several seeds, the paired bootstrap over evaluation examples with one; the table names the test
of each row, or says why none was possible. A grid that names a paper table (``paper_table``) then gets its
scorecard: measured beside published, the agreement of the orderings, and the section's claims.

Files, under ``<out>/<study>/report/``: table.md (the whole report), table.csv, significance.csv,
scores.png, curves.png (validation curves: mean over seeds and their band), compute.png (score against
training compute); with a paper table also scorecard.md, scorecard.csv, claims.csv and scorecard.png; tb/
(the report as TensorBoard text, the figures as images).
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from optuna.trial import FrozenTrial, TrialState

from t5lit.evaluator import PAPER_COLUMNS
from t5lit.io import atomic_write_text
from t5lit.registry import ConfigError
from t5lit.sweep import plots
from t5lit.sweep.study import is_lost, jobs_of, open_from_url
from t5lit.sweep.variants import Run, Variant

AVERAGE = "Average"
STAR = "★"


@dataclass
class Report:
    study: str
    columns: list[str]
    variants: list[Variant]
    bold: dict[str, set[str]]
    markdown: str
    files: dict[str, Path]
    scorecard: object | None = None  # t5lit.sweep.scorecard.Scorecard when the sweep names a paper table


def _status(t: FrozenTrial) -> str:
    if t.state == TrialState.FAIL:
        return "lost" if is_lost(t) else f"failed ({t.user_attrs.get('failure', '?')})"
    return t.state.name.lower()


def _seconds(t: FrozenTrial) -> float | None:
    if t.datetime_start is None or t.datetime_complete is None:
        return None
    return (t.datetime_complete - t.datetime_start).total_seconds()


def _run(t: FrozenTrial, attempts: list[FrozenTrial]) -> Run:
    a = t.user_attrs
    walls = [w for w in map(_seconds, attempts) if w is not None]  # a retried job's time counts every attempt
    summary = {k: float(v) for k, v in (a.get("summary") or {}).items() if isinstance(v, (int, float))}
    return Run(a.get("seed"), summary, a.get("scores") or {}, a.get("val_curves") or {}, a.get("cost") or {},
               list(a.get("reported") or []), a.get("examples") or None, a.get("run_dir"),
               sum(walls) if walls else None)


def collect(study, desc: dict) -> list[Variant]:
    """Variants from the study: each job's latest trial, grouped by row (grid) or one per trial (search)."""
    variants: dict[str, Variant] = {}
    paper_rows = desc.get("paper_rows") or {}
    if desc.get("kind") == "grid":
        for row in desc.get("rows", []):
            variants[row] = Variant(row, baseline=row == desc.get("baseline"), paper_row=paper_rows.get(row))
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
            run = _run(t, attempts)
            v.runs.append(run)
            for col, value in run.summary.items():
                v.values.setdefault(col, []).append(value)
            for key, curve in run.curves.items():
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


COSTS = (("Params", "parameters", ""), ("FLOPs/token", "flops_per_token", ""), ("Tokens", "train_tokens", ""),
         ("Wall", "wall_time", "s"))


def _si(x: float | None, unit: str = "") -> str:
    """``_si(222903552) == "222.9M"``; seconds as ``"1h02m"``, ``"3m05s"`` or ``"42s"``."""
    if x is None:
        return "–"
    if unit == "s":
        m, sec = divmod(int(round(x)), 60)
        h, m = divmod(m, 60)
        return f"{h}h{m:02d}m" if h else (f"{m}m{sec:02d}s" if m else f"{sec}s")
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(x) >= factor:
            return f"{x / factor:.1f}{prefix}"
    return f"{x:.0f}"


def markdown_table(variants: list[Variant], columns: list[str], bold: dict[str, set[str]]) -> str:
    show_params = any(v.params for v in variants)
    seeds = max((len(v.status) for v in variants), default=0)
    show_status = any(len(v.status) < seeds or any(s != "complete" for s in v.status) for v in variants)
    costs = [c for c in COSTS if any((x := v.cost(c[1])) is not None and (c[2] != "s" or x >= 1) for v in variants)]
    head = ["Variant", *(["Params"] if show_params else []), *columns, *[c[0] for c in costs],
            *(["Runs"] if show_status else [])]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join([":---"] + ["---:"] * (len(head) - 1)) + "|"]
    for v in variants:
        name = f"{v.name} {STAR}" if v.baseline else v.name
        cells = [name, *([v.params] if show_params else []), *(_cell(v, c, v.name in bold[c]) for c in columns),
                 *(_si(v.cost(key), unit) for _, key, unit in costs)]
        if show_status:
            cells.append(", ".join(v.status) or "not run")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _write_csv(path: Path, variants: list[Variant], columns: list[str]) -> None:
    f = io.StringIO(newline="")  # built in memory, written atomically
    w = csv.writer(f)
    w.writerow(["variant", "baseline", "params", "runs", *[x for c in columns for x in (c, f"{c}_std")],
                *[key for _, key, _ in COSTS]])
    for v in variants:
        row = [v.name, int(v.baseline), v.params, ";".join(v.status)]
        for c in columns:
            m, s = v.mean(c), v.std(c)
            row += ["" if m is None else f"{m:.4f}", "" if s is None else f"{s:.4f}"]
        row += ["" if (x := v.cost(key)) is None else f"{x:.6g}" for _, key, _ in COSTS]
        w.writerow(row)
    atomic_write_text(path, f.getvalue())


def _write_rows(path: Path, rows: list[dict]) -> None:
    """A CSV of dicts (the union of their keys, in first-seen order); NaN and None as empty cells."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    f = io.StringIO(newline="")
    w = csv.writer(f)
    w.writerow(keys)
    for r in rows:
        w.writerow(["" if (x := r.get(k)) is None or (isinstance(x, float) and math.isnan(x)) else
                    (f"{x:.6g}" if isinstance(x, float) else x) for k in keys])
    atomic_write_text(path, f.getvalue())


def _significance_rows(variants: list[Variant], columns: list[str], tester) -> list[dict]:
    base = next((v for v in variants if v.baseline), None)
    rows = []
    for v in variants:
        if base is None or v is base:
            continue
        for c in columns:
            o = tester.compare(v, base, c)
            r = o.result
            rows.append({"variant": v.name, "column": c, "test": o.test or "none", "diff": r.diff if r else None,
                         "low": r.low if r else None, "high": r.high if r else None, "p": r.p if r else None,
                         "significant": int(r.significant) if r else None, "note": o.note})
    return rows


def write_report(sweep: str | Path | None = None, *, study: str | None = None, storage: str | None = None,
                 out_dir: str | Path = "runs/sweeps", bootstrap_samples: int = 1000) -> Report:
    """Build the report of a sweep (its file, or a study name and storage) into ``<out>/<study>/report``.

    A study with no finished runs still gets its table (and scorecard: the published numbers alone)."""
    from t5lit.sweep.scorecard import Tester, build_scorecard, significance_markdown

    spec = None
    if sweep is not None:
        from t5lit.sweep.spec import load_sweep

        spec = load_sweep(sweep, check_rows=False)
        study = study or spec.study
    if not study:
        raise ConfigError("sweep report needs a sweep file or --study NAME (with --storage for an RDB)")
    st = open_from_url(study, storage, out_dir)
    desc = dict(st.user_attrs.get("sweep") or {"kind": "search"})
    if spec is not None and spec.kind == "grid":  # the sweep file as it is now names the paper's rows
        desc.update(paper_table=spec.paper_table, baseline=spec.baseline,
                    paper_rows={r.name: r.paper_row for r in spec.rows if r.paper_row})
    variants = collect(st, desc)
    columns = choose_columns(variants, desc.get("columns") or None)
    bold = bold_cells(variants, columns)
    tester = Tester(columns, n_samples=bootstrap_samples)
    done = sum(s == "complete" for v in variants for s in v.status)
    md = f"### {study}\n\n{markdown_table(variants, columns, bold)}\n\n{done}/{desc.get('total', '?')} runs " \
         f"complete; {STAR} baseline; bold: best (and within 2 std of it when seeds repeat)."
    if not done:
        md += " No finished runs yet."
    significance = significance_markdown(variants, columns, tester) if columns else ""
    if significance:
        md += f"\n\nEach row against {STAR}: the difference (95% interval; * p < 0.05) and its test.\n\n{significance}"
    md += "\n"
    folder = Path(out_dir) / study / "report"
    folder.mkdir(parents=True, exist_ok=True)
    files = {"markdown": folder / "table.md", "csv": folder / "table.csv", "significance": folder / "significance.csv",
             "scores": folder / "scores.png", "curves": folder / "curves.png", "compute": folder / "compute.png",
             "tensorboard": folder / "tb"}
    card = None
    if desc.get("paper_table") is not None and desc.get("kind") == "grid":
        from t5lit.paper import get_table

        card = build_scorecard(get_table(desc["paper_table"]), variants, columns, tester)
        md += "\n" + card.markdown
        files.update(scorecard=folder / "scorecard.md", scorecard_csv=folder / "scorecard.csv",
                     claims=folder / "claims.csv", scorecard_png=folder / "scorecard.png")
        atomic_write_text(files["scorecard"], card.markdown)
        _write_rows(files["scorecard_csv"], card.cells)
        _write_rows(files["claims"], [{"claim": c.claim.text, "kind": c.claim.kind, "verdict": c.verdict,
                                       "detail": c.detail} for c in card.claims])
    atomic_write_text(files["markdown"], md)
    _write_csv(files["csv"], variants, columns)
    _write_rows(files["significance"], _significance_rows(variants, columns, tester))
    figures = {"scores": plots.scores(study, variants, columns), "curves": plots.curves(study, variants),
               "compute": plots.compute(study, variants, AVERAGE if AVERAGE in columns else (columns or ["–"])[0])}
    if card is not None:
        figures["scorecard_png"] = plots.scorecard(study, card)
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(files["tensorboard"])) as w:
        w.add_text(f"sweep/{study}", md)
        for key, fig in figures.items():
            png = plots.save(fig, files[key])
            w.add_image(f"sweep/{study}/{key.removesuffix('_png')}", plots.pixels(png), dataformats="HWC")
    return Report(study, columns, variants, bold, md, files, card)
