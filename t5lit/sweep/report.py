"""Paper-style reports of a sweep: the table, a CSV, plots, the scorecard against the paper, TensorBoard.

One row per variant (grid row, or search trial), one column per summary column the runs produced (GLUE,
CNNDM, SQuAD, SGLUE, EnDe, EnFr, EnRo, then other tasks) and their Average; mean ± std over seeds; beside
them what the row cost (parameters, training FLOPs per token, training tokens, wall time; the paper's P and M
of Table 2). As in the paper (Section 3.1.5 / Table 1), the best score of each column is bold, and with
replicates every score within two standard deviations of the best as well (the baseline's standard deviation
when it has replicates, else the mean of the rows' standard deviations); the baseline is marked ★. As the paper
bolds every later table with Table 1's standard deviation, a sweep may take it from another sweep's baseline
(``std_from: table1_baseline.yaml`` in the sweep file, or ``t5lit sweep report X --std-from Y``): then every
score within two of those standard deviations of the best is bold, with one seed per row too.

Below the table, each row against ★ with a test (t5lit/sweep/scorecard.py): Welch's t-test and a bootstrap
interval with several seeds, the paired bootstrap over evaluation examples with one; the table names the test
of each row, or says why none was possible. A grid that names a paper table (``paper_table``) then gets its
scorecard: measured beside published, the agreement of the orderings, and the section's claims.

The report ends with one line saying what the sweep found (t5lit/sweep/conclusion.py): the best row, its
margin over the next with the test's interval and verdict, how many rows it beats significantly, and for a
paper table each of the table's claims the rows test, with its mean effect and confidence.

Files, under ``<out>/<study>/report/``: table.md (the whole report), table.csv, significance.csv,
scores.png (bars from zero, error bars), curves.png (pre-training loss beside the fine-tuning validation
curves: mean over seeds and their band), compute.png (score against training compute); with a paper table
also scorecard.md, scorecard.csv, claims.csv and scorecard.png; tb/ (the report as TensorBoard text, the
figures as images). Beside it, ``<out>/<study>/hparams/`` holds the sweep's one HParams experiment
(t5lit/hparams.py): the hyperparameters that vary across its runs first, the Average and each task's score
as metrics, so that ``tensorboard --logdir <out>/<study>`` opens on the comparison.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
import time
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


def bold_cells(variants: list[Variant], columns: list[str], higher_is_better: bool = True,
               reference_std: dict[str, float] | None = None) -> dict[str, set[str]]:
    """Per column, the variants in bold: the best, and with replicates all within 2 standard deviations (of
    ``reference_std[column]`` when given: another study's baseline, as Table 1's std is the paper's).

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
        if reference_std and reference_std.get(col) is not None:
            ref = reference_std[col]
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


def reference_std(sweep: str | Path, storage: str | None, out_dir: str | Path) -> tuple[dict[str, float], str]:
    """``({column: std}, note)``: the standard deviation over seeds of another sweep's baseline row (its ★, else
    the row with the most finished runs), read from its study in the same storage; ``({}, why)`` when that
    sweep has not run or no row has two finished runs yet (the report then says so and bolds as without)."""
    from t5lit.sweep.spec import load_sweep

    other = load_sweep(sweep, check_rows=False)
    try:
        st = open_from_url(other.study, storage, out_dir)
    except ConfigError:
        return {}, f"no std from {other.study}: it has not run yet"
    variants = collect(st, dict(st.user_attrs.get("sweep") or {"kind": "grid"}))
    ranked = sorted(variants, key=lambda v: (not v.baseline, -sum(s == "complete" for s in v.status)))
    for v in ranked:
        stds = {c: s for c in choose_columns([v]) if (s := v.std(c)) is not None}
        if stds:
            runs = sum(s == "complete" for s in v.status)
            return stds, f"std of {other.study}'s {v.name} over {runs} runs"
    return {}, f"no std from {other.study}: no row has two finished runs yet"


def write_report(sweep: str | Path | None = None, *, study: str | None = None, storage: str | None = None,
                 out_dir: str | Path = "runs/sweeps", bootstrap_samples: int = 1000,
                 std_from: str | Path | None = None) -> Report:
    """Build the report of a sweep (its file, or a study name and storage) into ``<out>/<study>/report``.

    A study with no finished runs still gets its table (and scorecard: the published numbers alone).
    ``std_from``: a sweep file whose baseline's std over seeds sets the bold (default: the sweep's own
    ``std_from``)."""
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
    std_from = std_from or (spec.std_from if spec is not None else None)
    ref_std, std_note = reference_std(std_from, storage, out_dir) if std_from is not None else ({}, "")
    bold = bold_cells(variants, columns, reference_std=ref_std)
    tester = Tester(columns, n_samples=bootstrap_samples)
    done = sum(s == "complete" for v in variants for s in v.status)
    how = (f"bold: within 2 std of the best ({std_note})" if ref_std else
           "bold: best (and within 2 std of it when seeds repeat)" + (f"; {std_note}" if std_note else ""))
    md = f"### {study}\n\n{markdown_table(variants, columns, bold)}\n\n{done}/{desc.get('total', '?')} runs " \
         f"complete; {STAR} baseline; {how}."
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
    from t5lit.sweep.conclusion import findings

    md += "\n" + findings(variants, columns, tester, card) + "\n"
    atomic_write_text(files["markdown"], md)
    _write_csv(files["csv"], variants, columns)
    _write_rows(files["significance"], _significance_rows(variants, columns, tester))
    intervals = column_intervals(variants, columns, tester)
    figures = {"scores": plots.scores(study, variants, columns, intervals), "curves": plots.curves(study, variants),
               "compute": plots.compute(study, variants, AVERAGE if AVERAGE in columns else (columns or ["–"])[0],
                                        intervals)}
    if card is not None:
        figures["scorecard_png"] = plots.scorecard(study, card)
    pngs = {key: plots.save(fig, files[key]) for key, fig in figures.items()}
    write_tensorboard(files["tensorboard"], study, md, {k.removesuffix("_png"): png for k, png in pngs.items()})
    files["hparams"] = write_sweep_experiment(Path(out_dir) / study, variants, columns, spec)
    return Report(study, columns, variants, bold, md, files, card)


# ------------------------------------------------------------------------------------------ TensorBoard
def column_intervals(variants: list[Variant], columns: list[str], tester) -> dict[tuple[str, str], tuple]:
    """The 95% bootstrap interval over the evaluation examples of each one-seed variant's columns (the
    resamples the paired bootstrap uses), for the figures' error bars: ``{(variant, column): (low, high)}``."""
    from t5lit import stats as S

    out = {}
    for v in variants:
        runs = v.values_of_runs()
        if len(runs) != 1:
            continue
        try:
            _, boot = tester._boot(runs[0])
        except Exception:  # noqa: BLE001 - no per-example scores: no interval, the figure says so
            continue
        out.update({(v.name, c): S.percentile_interval(boot[c]) for c in columns if c in boot})
    return out


def write_tensorboard(folder: Path, study: str, markdown: str, pngs: dict[str, bytes]) -> Path:
    """The report on TensorBoard (``<out>/<study>/report/tb``): its Markdown as text (``sweep/<study>``) and
    each figure as an image (``sweep/<study>/<figure>``), in one event file that replaces the last report's."""
    from tensorboard.compat.proto import types_pb2
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.compat.proto.tensor_pb2 import TensorProto
    from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto

    from t5lit.hparams import replace_events

    now = time.time()
    text = TensorProto(dtype=types_pb2.DT_STRING, string_val=[markdown.encode()],
                       tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=1)]))
    events = [Event(wall_time=now, step=0, summary=Summary(value=[Summary.Value(
        tag=f"sweep/{study}", tensor=text,
        metadata=SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="text")))]))]
    for key, png in pngs.items():
        width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")  # the PNG's IHDR
        image = Summary.Image(height=height, width=width, colorspace=4, encoded_image_string=png)  # RGBA PNG
        events.append(Event(wall_time=now, step=0, summary=Summary(value=[
            Summary.Value(tag=f"sweep/{study}/{key}", image=image)])))
    return replace_events(Path(folder), events)


def write_sweep_experiment(folder: Path, variants: list[Variant], columns: list[str], spec=None) -> Path | None:
    """The sweep's one HParams experiment (t5lit/hparams.py) in ``<out>/<study>/hparams``: its hyperparameters
    from the resolved configs of its runs (their ``config.yaml``) and, for a sweep file of t5lit's pipeline,
    of every row at every seed, those that vary first; its metrics from the runs' final numbers."""
    from t5lit.hparams import flatten, metric_names, run_metrics, write_experiment

    sessions, results = [], []
    for v in variants:
        for r in v.values_of_runs():
            if r.run_dir and (Path(r.run_dir) / "config.yaml").is_file():
                from t5lit.experiment import yaml_load

                sessions.append(flatten(yaml_load((Path(r.run_dir) / "config.yaml").read_text(encoding="utf-8"))))
            results.append(run_metrics({"summary": r.summary, "scores": r.scores, "cost": r.cost}))
    if spec is not None:
        sessions += sweep_sessions(spec)
    if not sessions:
        return None
    return write_experiment(folder / "hparams", sessions, metric_names(results, columns),
                            description=f"sweep {folder.name}: {len(variants)} rows")


def sweep_sessions(spec) -> list[dict]:
    """The flattened resolved config of every row (or searched parameter at its ends) at every seed, for a sweep
    of t5lit's pipeline; [] for a runner of one's own or when a row no longer resolves."""
    from t5lit.hparams import flatten
    from t5lit.sweep.spec import check_sweep

    if not spec.schema:
        return []
    try:
        checked = check_sweep(spec)
    except ConfigError:
        return []
    configs = [exp.to_dict() for label, exp in checked.items() if label != "base" or spec.kind == "search"]
    return [flatten({**c, "seed": seed}) for c in configs for seed in spec.seeds]
