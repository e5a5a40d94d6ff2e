"""The scorecard: a sweep's measured scores beside the paper's published ones, and the statistics behind
"this row differs from ★".

Tests of a row against another (``Tester``), per column:

- several seeds on both rows: Welch's t-test on the per-seed scores, with a bootstrap confidence interval of
  the difference of the means (seeds resampled within each row);
- otherwise, one run of each (the same seed where both have it): the paired bootstrap over the evaluation
  examples. Each run keeps its per-example statistics (results' ``examples``), so every resample of the
  examples (the same draws for every run: ``t5lit.stats.bootstrap_draws``) recomputes each task's metrics,
  the summary columns and their Average, exactly as the run's own scores were computed;
- neither possible (one seed and no per-example scores, or runs scored on different examples): no test,
  and the table says why.

The scorecard of a sweep that names a paper table (``paper_table``, each row its ``paper_row``): each measured
cell beside the published one; per column, the agreement of the two row orderings (Kendall's tau-b and
Spearman's rho over the rows both have) and of the signs of each row's difference from ★; and a verdict per
claim of the table's section (t5lit/paper/tables.yaml): reproduced (every comparison significant in the
paper's direction), contradicted (one significant the other way), not significant, or untested. Columns the
paper does not have (the quickstart's built-in tasks) are compared through their Average, beside the
published rows' mean over the paper's columns.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from t5lit import stats as S
from t5lit.paper import AVERAGE, Claim, PaperTable

if TYPE_CHECKING:
    from t5lit.sweep.variants import Run, Variant

STAR = "★"


# ------------------------------------------------------------------------------------- per-example values
def run_examples(run: Run) -> dict | None:
    """A run's per-example statistics by task (``ExampleScores``), from the study or its results.json."""
    if run.examples is None and run.run_dir:
        path = Path(run.run_dir) / "results.json"
        try:
            run.examples = json.loads(path.read_text()).get("examples") or {}
        except (OSError, ValueError):
            run.examples = {}
    if not run.examples:
        return None
    if run._parsed is None:
        from t5lit.data.tasks import TASKS
        from t5lit.data.tasks.base import ExampleScores

        run._parsed = {t: ExampleScores.from_dict(r) for t, r in run.examples.items() if t in TASKS}
    return run._parsed or None


def _columns_of(run: Run, metrics: dict[str, dict[str, float]], columns: list[str]) -> dict[str, float]:
    """The summary columns (and their Average over ``columns``) of per-task metrics, as the run made them."""
    from t5lit.evaluator import summarize

    out = summarize(metrics, run.reported or list(metrics))
    values = [out.get(c) for c in columns]
    if columns and all(v is not None for v in values):
        out[AVERAGE] = statistics.fmean(values)
    return out


@dataclass(frozen=True)
class Outcome:
    """The test of one row against another in one column: which test, its result, or why there is none."""

    test: str = ""  # "Welch t" | "paired bootstrap" | "" (none)
    result: S.Comparison | None = None
    note: str = ""

    @property
    def direction(self) -> int:
        """+1 / -1: significantly higher / lower; 0: not significant or not tested."""
        r = self.result
        return 0 if r is None or not r.significant else (1 if r.diff > 0 else -1)


class Tester:
    """Row-against-row tests, per column (see the module docstring); bootstrap values cached per run."""

    def __init__(self, columns: list[str], n_samples: int = S.BOOTSTRAP_SAMPLES, seed: int = 0):
        self.columns = [c for c in columns if c != AVERAGE]
        self.n_samples, self.seed = n_samples, seed
        self._draws: dict[tuple, list] = {}
        self._values: dict[tuple, tuple[dict, dict[str, np.ndarray]]] = {}

    def describe(self, a: Variant, b: Variant) -> str:
        """Which test compares ``a`` with ``b``, in words, or why none does."""
        test, runs, note = self._plan(a, b)
        if test == "Welch t":
            return f"Welch t ({len(a.values_of_runs())} vs {len(b.values_of_runs())} seeds)"
        if test:
            n = sum(len(s) for s in run_examples(runs[0]).values())
            return f"paired bootstrap (seed {runs[0].seed}, {n} examples)"
        return f"– ({note})"

    def compare(self, a: Variant, b: Variant, column: str) -> Outcome:
        test, runs, note = self._plan(a, b)
        if test == "Welch t":
            va, vb = a.values.get(column) or [], b.values.get(column) or []
            if len(va) < 2 or len(vb) < 2:
                return Outcome(note=f"{column}: fewer than 2 seeds")
            return Outcome(test, S.seeds_test(va, vb, seed=self.seed))
        if not test:
            return Outcome(note=note)
        (obs_a, boot_a), (obs_b, boot_b) = self._boot(runs[0]), self._boot(runs[1])
        if column not in boot_a or column not in boot_b:
            return Outcome(note=f"{column}: not recomputable from the per-example scores")
        return Outcome(test, S.paired_difference(boot_a[column], boot_b[column], obs_a[column] - obs_b[column]))

    # -- which test
    def _plan(self, a: Variant, b: Variant) -> tuple[str, tuple, str]:
        ra, rb = a.values_of_runs(), b.values_of_runs()
        if not ra or not rb:
            return "", (), "no finished run" + ("" if ra else f" of {a.name}")
        if len(ra) >= 2 and len(rb) >= 2:
            return "Welch t", (), ""
        seeds_b = {r.seed: r for r in rb}
        pairs = [(r, seeds_b[r.seed]) for r in ra if r.seed in seeds_b] or [(ra[0], rb[0])]
        for x, y in pairs:
            ex, ey = run_examples(x), run_examples(y)
            if ex and ey:
                if {t: len(s) for t, s in ex.items()} != {t: len(s) for t, s in ey.items()}:
                    return "", (), "runs scored on different examples"
                return "paired bootstrap", (x, y), ""
        fewer = min(len(ra), len(rb))
        return "", (), f"{fewer} seed{'s' if fewer != 1 else ''}, no per-example scores"

    def _boot(self, run: Run) -> tuple[dict, dict[str, np.ndarray]]:
        """The run's recomputed columns on its examples as they are, and on each bootstrap draw."""
        key = (id(run),)
        if key not in self._values:
            from t5lit.data.tasks import get_task

            parsed = run_examples(run) or {}
            sizes = {t: len(s) for t, s in sorted(parsed.items())}
            dkey = tuple(sizes.items())
            if dkey not in self._draws:
                self._draws[dkey] = S.bootstrap_draws(sizes, self.n_samples, self.seed)
            tasks = {t: get_task(t) for t in parsed}

            def columns(draw):
                metrics = {t: tasks[t].metrics_from(s, None if draw is None else draw[t]) for t, s in parsed.items()}
                return _columns_of(run, metrics, self.columns)

            observed = columns(None)
            # Only the columns the statistics reproduce (all of their tasks kept per-example scores, and exactly
            # so): the others cannot be resampled.
            expected = dict(run.summary)
            if self.columns and all(c in expected for c in self.columns):
                expected[AVERAGE] = statistics.fmean(expected[c] for c in self.columns)
            same = [c for c, x in observed.items() if c in expected and abs(x - expected[c]) <= 1e-3 * max(1, abs(x))]
            rows = [columns(d) for d in self._draws[dkey]]
            boot = {c: np.asarray([r[c] for r in rows]) for c in same if all(c in r for r in rows)}
            self._values[key] = (observed, boot)
        return self._values[key]


def significance_markdown(variants: list[Variant], columns: list[str], tester: Tester) -> str:
    """Each row against ★ per column: the difference of the means, its 95% interval, * when p < 0.05, and the
    test used (or why none could be)."""
    base = next((v for v in variants if v.baseline), None)
    if base is None:
        return ""
    head = ["Variant", *[f"{c} Δ" for c in columns], "Test"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join([":---"] + ["---:"] * len(columns) + [":---"]) + "|"]
    for v in variants:
        if v is base:
            continue
        cells = []
        for c in columns:
            o = tester.compare(v, base, c)
            cells.append(_delta_cell(o, v, base, c))
        lines.append("| " + " | ".join([v.name, *cells, tester.describe(v, base)]) + " |")
    return "\n".join(lines)


def _delta_cell(o: Outcome, a: Variant, b: Variant, column: str) -> str:
    if o.result is None:
        ma, mb = a.mean(column), b.mean(column)
        return "–" if ma is None or mb is None else f"{ma - mb:+.2f}"
    r = o.result
    star = "*" if r.significant else ""
    interval = "" if math.isnan(r.low) else f" [{r.low:+.2f}, {r.high:+.2f}]"
    return f"{r.diff:+.2f}{star}{interval}"


# ------------------------------------------------------------------------------------- the scorecard
@dataclass
class ClaimVerdict:
    claim: Claim
    verdict: str  # reproduced | contradicted | not significant | untested
    detail: str


@dataclass
class Scorecard:
    table: PaperTable
    columns: list[str]  # the compared columns (measured and published)
    published: dict[str, dict[str, float | None]]  # variant -> column -> published value
    agreement: dict[str, dict[str, str]]  # "Kendall τ" | "Spearman ρ" | "signs vs ★" -> column -> text
    claims: list[ClaimVerdict]
    markdown: str
    cells: list[dict] = field(default_factory=list)  # one per (variant, column), for the CSV and the plot


def compared_columns(table: PaperTable, columns: list[str]) -> tuple[list[str], tuple[str, ...]]:
    """The report's columns that the paper has, and Average; with the paper columns the Average spans."""
    paper = [c for c in columns if c in table.columns()]
    over = tuple(paper) if paper else tuple(table.columns())
    return paper + ([AVERAGE] if AVERAGE in columns or not paper else []), over


def build_scorecard(table: PaperTable, variants: list[Variant], columns: list[str], tester: Tester) -> Scorecard:
    cols, over = compared_columns(table, columns)
    mapped = [v for v in variants if v.paper_row]
    published = {v.name: {c: table.row(v.paper_row).value(c, over) for c in cols} for v in mapped}
    base = next((v for v in variants if v.baseline), None)
    base_pub = published.get(base.name) if base is not None else None
    agreement: dict[str, dict[str, str]] = {"Kendall τ": {}, "Spearman ρ": {}, "signs vs ★": {}}
    cells = []
    for c in cols:
        pairs = [(v.mean(c), published[v.name][c]) for v in mapped]
        pairs = [(m, p) for m, p in pairs if m is not None and p is not None]
        if len(pairs) >= 2:
            x, y = [m for m, _ in pairs], [p for _, p in pairs]
            agreement["Kendall τ"][c] = _fmt(S.kendall_tau(x, y))
            agreement["Spearman ρ"][c] = _fmt(S.spearman_rho(x, y))
        agree = total = 0
        for v in mapped:
            m, p = v.mean(c), published[v.name][c]
            row = {"variant": v.name, "paper_row": v.paper_row, "column": c, "measured": m, "std": v.std(c),
                   "published": p, "sign_agrees": None}
            if base is not None and v is not base and base_pub is not None and None not in (
                    m, p, base.mean(c), base_pub[c]):
                same = S.sign(m - base.mean(c)) == S.sign(p - base_pub[c])
                agree, total, row["sign_agrees"] = agree + same, total + 1, same
                o = tester.compare(v, base, c)
                if o.result is not None:
                    row.update(test=o.test, p=o.result.p, low=o.result.low, high=o.result.high)
            cells.append(row)
        if total:
            agreement["signs vs ★"][c] = f"{agree}/{total}"
    verdicts = [judge(claim, table, variants, columns, tester) for claim in table.claims]
    card = Scorecard(table, cols, published, agreement, verdicts, "", cells)
    card.markdown = scorecard_markdown(card, variants)
    return card


def judge(claim: Claim, table: PaperTable, variants: list[Variant], columns: list[str],
          tester: Tester) -> ClaimVerdict:
    """The verdict on one claim: every (pair, column) comparison of it, tested."""
    by_row = {v.paper_row: v for v in variants if v.paper_row}
    pairs = [(by_row[a], by_row[b]) for a, b in claim.pairs if a in by_row and b in by_row]
    cols = [c for c in claim.columns if c in columns]
    if not pairs:
        return ClaimVerdict(claim, "untested", "its rows are not in this sweep")
    if not cols:
        return ClaimVerdict(claim, "untested", f"{', '.join(claim.columns)} not measured")
    support = against = untested = paper_way = 0
    for a, b in pairs:
        for c in cols:
            o = tester.compare(a, b, c)
            ma, mb = a.mean(c), b.mean(c)
            if ma is None or mb is None:
                untested += 1
                continue
            if claim.kind == "better":
                paper_way += ma > mb
                support += o.direction > 0
                against += o.direction < 0
            else:  # close: the difference's interval inside (reproduced) or outside (contradicted) the band
                band = claim.within * abs(mb)
                paper_way += abs(ma - mb) <= band
                if o.result is not None and not math.isnan(o.result.low):
                    support += -band <= o.result.low and o.result.high <= band
                    against += o.result.low > band or o.result.high < -band
            untested += o.result is None
    n = len(pairs) * len(cols)
    missing = len(claim.pairs) - len(pairs)
    detail = f"on {', '.join(cols)}: {support}/{n} significant as the paper says, {against} against; " \
             f"{paper_way}/{n} in the paper's direction" + (f"; {untested} untested" if untested else "") + \
             (f"; {missing} of its {len(claim.pairs)} pairs not in this sweep" if missing else "") + \
             "".join(f"; {c} not measured" for c in claim.columns if c not in cols)
    if against:
        verdict = "contradicted"
    elif support == n:
        verdict = "reproduced"
    elif untested == n:
        verdict = "untested"
    else:
        verdict = "not significant"
    return ClaimVerdict(claim, verdict, detail)


def _fmt(x: float | None, digits: int = 2) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def scorecard_markdown(card: Scorecard, variants: list[Variant]) -> str:
    t = card.table
    lines = [f"### Scorecard: {t.name} (Section {t.section}): {t.title}", ""]
    if not any(v.values for v in variants):
        lines += ["No finished runs yet: the published numbers alone.", ""]
    extra = [e for e in t.extra if e in ("params", "cost")]
    head = ["Variant", "Paper row", *[f"{c} (paper)" for c in card.columns], *[f"{e} (paper)" for e in extra]]
    lines += ["| " + " | ".join(head) + " |", "|" + "|".join([":---", ":---"] + ["---:"] * (len(head) - 2)) + "|"]
    base = next((v for v in variants if v.baseline), None)
    for v in variants:
        name = f"{v.name} {STAR}" if v.baseline else v.name
        if not v.paper_row:
            lines.append("| " + " | ".join([name, "–", *["–"] * (len(head) - 2)]) + " |")
            continue
        row = t.row(v.paper_row)
        cells = [f"{_fmt(v.mean(c))} ({_fmt(card.published[v.name][c])})" for c in card.columns]
        cells += [f"{_relative(v, base, e)} ({row.extra.get(e, '–')})" for e in extra]
        lines.append("| " + " | ".join([name, row.label, *cells]) + " |")
    lines += ["", "| Agreement | " + " | ".join(card.columns) + " |", "|:---|" + "---:|" * len(card.columns)]
    for what, values in card.agreement.items():
        lines.append(f"| {what} | " + " | ".join(values.get(c, "–") for c in card.columns) + " |")
    if card.columns and card.columns[-1] == AVERAGE and not any(c in t.columns() for c in card.columns[:-1]):
        lines += ["", f"Average: the mean of this sweep's columns, beside the published rows' mean over the paper's "
                      f"{len(t.columns())} columns."]
    if card.claims:
        lines += ["", f"Claims of Section {t.section}:", ""]
        lines += [f"- **{c.verdict}**: {c.claim.text} ({c.detail})" for c in card.claims]
    per_task = _per_task_lines(t, variants)
    if per_task:
        lines += ["", "Per task (the paper's Table 16), measured (published):", "", *per_task]
    return "\n".join(lines) + "\n"


def _relative(v: Variant, base: Variant | None, what: str) -> str:
    """A row's parameters (P) or FLOPs per token (M) in the units of the paper's Table 2: ★ is 2P and M."""
    key, unit, base_units = ("parameters", "P", 2.0) if what == "params" else ("flops_per_token", "M", 1.0)
    mine, ref = v.cost(key), base.cost(key) if base is not None else None
    if mine is None or not ref:
        return "–"
    return f"{base_units * mine / ref:.2f}{unit}"


def _per_task_lines(table: PaperTable, variants: list[Variant]) -> list[str]:
    keys = sorted({k for v in variants if v.paper_row for k in table.row(v.paper_row).tasks
                   if any(k.split(".", 1)[0] in (r.scores or {}) for r in v.values_of_runs())})
    if not keys:
        return []
    lines = ["| Variant | " + " | ".join(keys) + " |", "|:---|" + "---:|" * len(keys)]
    for v in variants:
        if not v.paper_row:
            continue
        pub = table.row(v.paper_row).tasks
        cells = []
        for k in keys:
            task, metric = k.split(".", 1)
            vals = [r.scores[task][metric] for r in v.values_of_runs() if metric in (r.scores or {}).get(task, {})]
            cells.append(f"{_fmt(statistics.fmean(vals) if vals else None)} ({_fmt(pub.get(k))})")
        lines.append(f"| {v.name} | " + " | ".join(cells) + " |")
    return lines
